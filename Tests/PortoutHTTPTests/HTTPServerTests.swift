import Foundation
import PortoutCore
import PortoutTestSupport
import Synchronization
import Testing

@testable import PortoutHTTP

/// The server over real loopback sockets, with a handler that echoes what it received.
@Suite(.serialized)
struct HTTPServerTests {
    struct EchoHandler: HTTPRequestHandler {
        func checkHead(_ head: HTTPRequestHead, peer: String) -> HTTPResponse? {
            head.path == "/reject-early" ? HTTPResponse(status: 403, body: Array("early".utf8)) : nil
        }

        func handle(_ request: HTTPRequest, peer: String, responder: HTTPResponder) {
            let text = "\(request.head.method) \(request.head.target) \(request.body.count)"
            if request.head.path == "/large" {
                responder.respond(HTTPResponse(status: 200, body: Array(repeating: UInt8(ascii: "x"), count: 65_536)))
            } else if request.head.path == "/slow" {
                DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) {
                    responder.respond(HTTPResponse(status: 200, body: Array(text.utf8)))
                }
            } else {
                responder.respond(HTTPResponse(status: 200, body: Array(text.utf8)))
            }
        }
    }

    static func start(_ change: (inout Limits) -> Void = { _ in }) throws -> HTTPServer {
        var limits = Limits()
        limits.maxHeaderBytes = 1024
        limits.maxBodyBytes = 4096
        change(&limits)
        let server = HTTPServer(
            configuration: HTTPServer.Configuration(host: "127.0.0.1", port: 0, eventLoops: 2, limits: limits),
            handler: EchoHandler(), logger: Logger(level: .error))
        try server.start()
        return server
    }

    @Test func keepAliveServesSeveralRequests() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        for index in 0..<3 {
            let response = client.request("POST", "/r\(index)", body: Array("abc".utf8))
            #expect(response?.status == 200)
            #expect(response.map { String(decoding: $0.body, as: UTF8.self) } == "POST /r\(index) 3")
        }
    }

    /// A client that sends a partial request behind one being handled and then stops sending gets its response, and
    /// the connection closes at once instead of waiting out the body timeout.
    @Test func partialRequestAfterHalfCloseClosesAfterResponse() throws {
        let server = try Self.start { $0.bodyTimeoutMs = 30_000 }
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        client.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\nPOST /partial HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        usleep(50_000)
        client.finishSending()
        let response = client.readResponse()
        #expect(response?.status == 200)
        let started = Date()
        #expect(client.isClosedByServer())
        #expect(Date().timeIntervalSince(started) < 5)
    }

    @Test func pipelinedRequestsAnsweredInOrder() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        // The slow one first: its response must still come first.
        client.send(
            "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n"
                + "POST /third HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        let bodies = (0..<3).compactMap { _ in client.readResponse().map { String(decoding: $0.body, as: UTF8.self) } }
        #expect(bodies == ["GET /slow 0", "GET /second 0", "POST /third 2"])
    }

    @Test func resetWhileResponsesWaitKeepsServing() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        // 200 pipelined requests for 64 KiB each fill the socket buffers, so responses are still waiting to be
        // written when the reset arrives. The write fails and closes the connection inside the same readiness
        // event that also reports the hang-up, which must not read the closed descriptor.
        for _ in 0..<3 {
            let client = try LoopbackClient(port: server.port)
            client.send(String(repeating: "GET /large HTTP/1.1\r\nHost: x\r\n\r\n", count: 200))
            Thread.sleep(forTimeInterval: 0.2)
            client.resetOnClose()
        }
        let client = try LoopbackClient(port: server.port)
        #expect(client.request("GET", "/after")?.status == 200)
    }

    @Test func chunkedBodyDecoded() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        client.send("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n")
        #expect(client.readResponse().map { String(decoding: $0.body, as: UTF8.self) } == "POST /c 8")
    }

    @Test func expectContinueGetsInterimResponse() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        client.send("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        #expect(client.readResponse()?.status == 100)
        client.send("body")
        #expect(client.readResponse()?.status == 200)
    }

    @Test func otherExpectationGets417() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let withBody = try LoopbackClient(port: server.port)
        withBody.send("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue, x-fast\r\n\r\n")
        let response = withBody.readResponse()
        #expect(response?.status == 417)
        #expect(response?.json?.objectValue?["code"] == "expectationFailed")
        // The body was never read, so the server cannot find where the next request starts.
        #expect(withBody.isClosedByServer())

        let withoutBody = try LoopbackClient(port: server.port)
        withoutBody.send("GET /e HTTP/1.1\r\nHost: x\r\nExpect: x-fast\r\n\r\n")
        #expect(withoutBody.readResponse()?.status == 417)
        #expect(withoutBody.request("GET", "/after")?.status == 200)

        // The server ignores an HTTP/1.0 request's expectations.
        let http10 = try LoopbackClient(port: server.port)
        http10.send("POST /e HTTP/1.0\r\nContent-Length: 4\r\nExpect: x-fast\r\n\r\nbody")
        #expect(http10.readResponse()?.status == 200)

        // A request that the handler rejects from its head gets the handler's response, not 417.
        let rejected = try LoopbackClient(port: server.port)
        rejected.send("GET /reject-early HTTP/1.1\r\nHost: x\r\nExpect: x-fast\r\n\r\n")
        #expect(rejected.readResponse()?.status == 403)
    }

    @Test func headLimitIncludesFinalCRLF() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        // Heads of exactly the 1,024-byte limit and one byte over it.
        for (size, status) in [(1024, 200), (1025, 431)] {
            let start = "GET /h HTTP/1.1\r\nHost: x\r\nX-Pad: "
            let head = start + String(repeating: "a", count: size - start.utf8.count - 4) + "\r\n\r\n"
            #expect(head.utf8.count == size)
            let client = try LoopbackClient(port: server.port)
            client.send(head)
            #expect(client.readResponse()?.status == status)
        }
    }

    @Test func earlyResponseClosesWhenBodyUnread() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        client.send("POST /reject-early HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        let response = client.readResponse()
        #expect(response?.status == 403)
        #expect(response?.header("Connection") == "close")
        #expect(client.isClosedByServer())
    }

    @Test func oversizedHeadIs431() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        client.send("GET / HTTP/1.1\r\nHost: x\r\nX-Filler: \(String(repeating: "a", count: 2000))\r\n\r\n")
        #expect(client.readResponse()?.status == 431)
        #expect(client.isClosedByServer())
    }

    @Test func oversizedBodyIs413() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        client.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        let response = client.readResponse()
        #expect(response?.status == 413)
        #expect(response?.json?.objectValue?["code"] == "bodyTooLarge")
        #expect(client.isClosedByServer())
    }

    @Test(arguments: [
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        "GET / HTTP/1.1\nHost: x\n\n",
        "GET / HTTP/1.1\r\nHo\u{1}st: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
    ])
    func ambiguousFramingIs400AndCloses(_ request: String) throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        client.send(request)
        let response = client.readResponse()
        #expect(response?.status == 400)
        #expect(response?.json?.objectValue?["object"] == "error")
        #expect(client.isClosedByServer())
    }

    @Test func slowHeadTimesOutWith408() throws {
        let server = try Self.start { $0.headerTimeoutMs = 300 }
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        client.send("GET / HTTP/1.1\r\nHost: x\r\n")
        let response = client.readResponse()
        #expect(response?.status == 408)
        #expect(client.isClosedByServer())
        // Other clients are served meanwhile.
        let other = try LoopbackClient(port: server.port)
        #expect(other.request("GET", "/ok")?.status == 200)
    }

    @Test func slowBodyTimesOutWith408() throws {
        let server = try Self.start { $0.bodyTimeoutMs = 300 }
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        client.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        #expect(client.readResponse()?.status == 408)
    }

    @Test func idleConnectionClosedSilently() throws {
        let server = try Self.start { $0.idleTimeoutMs = 300 }
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        #expect(client.request("GET", "/one")?.status == 200)
        let started = Date()
        #expect(client.isClosedByServer())
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(waitUntil { server.connectionCount == 0 })
    }

    @Test func connectionLimitRejectsExtra() throws {
        let server = try Self.start { $0.maxConnections = 2 }
        defer { server.shutdown() }
        let first = try LoopbackClient(port: server.port)
        let second = try LoopbackClient(port: server.port)
        #expect(first.request("GET", "/a")?.status == 200)
        #expect(second.request("GET", "/b")?.status == 200)
        let third = try LoopbackClient(port: server.port)
        let rejected = third.readResponse()
        #expect(rejected?.status == 503)
        #expect(rejected?.json?.objectValue?["code"] == "tooManyConnections")
        // The first two are still served.
        #expect(first.request("GET", "/c")?.status == 200)
    }

    /// One client address cannot take more than its share of connections; another address still gets one, and a
    /// closed connection gives its place back.
    @Test func perClientLimitRejectsExtra() throws {
        let server = try Self.start { limits in
            limits.maxConnections = 10
            limits.maxConnectionsPerClient = 2
        }
        defer { server.shutdown() }
        var first: LoopbackClient? = try LoopbackClient(port: server.port)
        let second = try LoopbackClient(port: server.port)
        #expect(first?.request("GET", "/a")?.status == 200)
        #expect(second.request("GET", "/b")?.status == 200)
        let third = try LoopbackClient(port: server.port)
        let rejected = third.readResponse()
        #expect(rejected?.status == 503)
        #expect(rejected?.json?.objectValue?["code"] == "tooManyConnections")
        #expect(third.isClosedByServer())
        #expect(server.connectionRejectionCounts.perClient == 1)
        #expect(server.connectionRejectionCounts.total == 0)

        let elsewhere = try LoopbackClient(port: server.port, sourceHost: "127.0.0.2")
        #expect(elsewhere.request("GET", "/c")?.status == 200)

        first = nil
        #expect(waitUntil { server.connectionCount == 2 })
        let replacement = try LoopbackClient(port: server.port)
        #expect(replacement.request("GET", "/d")?.status == 200)
    }

    /// The per-client limit counts an IPv6 client by its /64, since one host is often given a whole /64, and an
    /// IPv4 client by its address, also when a dual-stack listener sees it as an IPv4-mapped address.
    @Test(arguments: [
        ("10.0.0.1", "10.0.0.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8::ffff:1234:1", "2001:db8::/64"),
        ("2001:db8:0:1::1", "2001:db8:0:1::/64"),
        ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),
    ])
    func clientAddressGroupsIPv6Networks(_ peer: String, _ expected: String) throws {
        var storage = sockaddr_storage()
        _ = try Socket.fillAddress(&storage, host: peer, port: 443)
        #expect(Socket.clientAddress(storage) == expected)
    }

    @Test func http10ClosesUnlessKeepAlive() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        client.send("GET /a HTTP/1.0\r\n\r\n")
        #expect(client.readResponse()?.status == 200)
        #expect(client.isClosedByServer())
        let keeping = try LoopbackClient(port: server.port)
        keeping.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        #expect(keeping.readResponse()?.header("Connection") == "keep-alive")
        keeping.send("GET /b HTTP/1.0\r\n\r\n")
        #expect(keeping.readResponse()?.status == 200)
    }

    @Test func halfClosedClientStillGetsResponse() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        client.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        shutdown(client.fd, Int32(SHUT_WR))
        #expect(client.readResponse()?.status == 200)
        #expect(client.isClosedByServer())
    }

    @Test func drainAnswersRequestsAlreadyRead() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let port = server.port
        let busy = try LoopbackClient(port: port)
        let idle = try LoopbackClient(port: port)
        #expect(idle.request("GET", "/warm")?.status == 200)
        busy.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        Thread.sleep(forTimeInterval: 0.05)
        let remaining = server.drain(timeoutMs: 5000)
        #expect(remaining == 0)
        // The request under way got its response, with a header that closes the connection.
        let response = busy.readResponse()
        #expect(response?.status == 200)
        #expect(response?.header("Connection") == "close")
        #expect(busy.isClosedByServer())
        // The idle keep-alive connection was closed, and the listener no longer accepts.
        #expect(idle.isClosedByServer())
        #expect((try? LoopbackClient(port: port)) == nil)
    }

    @Test func accessLogWritesOneLinePerResponse() throws {
        let lines = Locked<[String]>([])
        let sink = LogSink { bytes in lines.withLock { $0.append(String(decoding: bytes, as: UTF8.self)) } }
        let server = HTTPServer(
            configuration: HTTPServer.Configuration(host: "127.0.0.1", port: 0, eventLoops: 1, limits: Limits()),
            handler: EchoHandler(), logger: Logger(level: .info, sink: sink))
        try server.start()
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        #expect(client.request("GET", "/quiet")?.status == 200)
        #expect(lines.withLock { $0 }.isEmpty)

        server.accessLog.store(true, ordering: .relaxed)
        #expect(client.request("POST", "/logged?subscription=sub_secret", body: Array("abc".utf8))?.status == 200)
        let logged = lines.withLock { $0 }
        #expect(logged.count == 1)
        let line = try #require(try JSONParser.parse(logged.first ?? "").objectValue)
        #expect(line["msg"] == "request")
        #expect(line["method"] == "POST")
        #expect(line["path"] == "/logged")
        #expect(line["status"] == 200)
        #expect(line["bytes"] == .number(Double("POST /logged?subscription=sub_secret 3".utf8.count)))
        #expect(!logged[0].contains("sub_secret"))
    }
}
