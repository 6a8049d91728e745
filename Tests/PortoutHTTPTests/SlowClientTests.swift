import Foundation
import PortoutCore
import PortoutTestSupport
import Testing

@testable import PortoutHTTP

/// Clients that send a request too slowly or never finish it: each gets a 408 and a closed connection at its
/// timeout, the handler never gets the request, and other clients are served meanwhile.
struct SlowClientTests {
    static let timeoutMs = 1_500

    /// Sends `trickled` one byte a second after `prefix`, requesting `/other` on two other connections between
    /// bytes, until the server responds on the slow connection. Returns that response, how many trickled bytes
    /// went out before it, and how many of the other requests got a correct response.
    static func trickle(
        _ prefix: String,
        _ trickled: String,
        to server: RecordingServer
    ) throws -> (response: LoopbackClient.Response?, sent: Int, othersServed: Int, othersSent: Int) {
        let slow = try LoopbackClient(port: server.port)
        let keepAlive = try LoopbackClient(port: server.port)
        slow.send(prefix)
        let bytes = Array(trickled.utf8)
        var sent = 0
        var othersSent = 0
        var othersServed = 0
        while sent < bytes.count {
            slow.send([bytes[sent]])
            sent += 1
            let fresh = try LoopbackClient(port: server.port)
            for client in [fresh, keepAlive] {
                othersSent += 1
                if client.request("GET", "/other/\(othersSent)")?.text == "GET /other/\(othersSent) 0" {
                    othersServed += 1
                }
            }
            if slow.waitForInput(timeoutMs: 1_000) {
                break
            }
        }
        let response = slow.readResponse()
        #expect(slow.isClosedByServer())
        return (response, sent, othersServed, othersSent)
    }

    static func expectTimedOut(_ response: LoopbackClient.Response?) {
        #expect(response?.status == 408)
        #expect(response?.header("Connection") == "close")
        #expect(response?.json?.objectValue?["code"] == "requestTimeout")
    }

    /// If each byte pushed the header deadline back, the whole head would go out in 43 seconds and be served.
    @Test func headTrickledOneBytePerSecondGets408() throws {
        let server = try RecordingServer { $0.headerTimeoutMs = Self.timeoutMs }
        defer { server.shutdown() }
        let head = "GET /trickled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        let (response, sent, othersServed, othersSent) = try Self.trickle("", head, to: server)
        Self.expectTimedOut(response)
        #expect(sent < head.utf8.count, "the whole head went out before the server responded")
        #expect(othersServed == othersSent)
        #expect(!server.requestTargets.contains("/trickled"))
    }

    /// The same for a body: the body deadline runs from the end of the head and later bytes do not move it.
    @Test func bodyTrickledOneBytePerSecondGets408() throws {
        let server = try RecordingServer { $0.bodyTimeoutMs = Self.timeoutMs }
        defer { server.shutdown() }
        let body = String(repeating: "b", count: 40)
        let head = "POST /trickled HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
        let (response, sent, othersServed, othersSent) = try Self.trickle(head, body, to: server)
        Self.expectTimedOut(response)
        #expect(sent < body.utf8.count, "the whole body went out before the server responded")
        #expect(othersServed == othersSent)
        #expect(!server.requestTargets.contains("/trickled"))
    }

    /// Requests whose body stops short and never resumes, each named by where it stops.
    static let unfinishedBodies: [(String, String)] = [
        ("Content-Length larger than the body sent", "Content-Length: 100\r\n\r\n0123456789"),
        ("chunked body stopped mid-chunk", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\na\r\nhello"),
        ("chunked body stopped in a chunk size line", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1"),
        ("chunked body stopped before the CRLF after chunk data", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello"),
        ("chunked body stopped in the trailers", "Transfer-Encoding: chunked\r\n\r\n0\r\nX-Trailer: 1\r\n"),
    ]

    @Test(arguments: Self.unfinishedBodies.map(\.0))
    func unfinishedBodyGets408(_ name: String) throws {
        let framingAndBody = try #require(Self.unfinishedBodies.first { $0.0 == name }?.1)
        let server = try RecordingServer { $0.bodyTimeoutMs = Self.timeoutMs }
        defer { server.shutdown() }
        let stalled = try LoopbackClient(port: server.port)
        stalled.send("POST /unfinished HTTP/1.1\r\nHost: 127.0.0.1\r\n" + framingAndBody)

        // Other clients are served while the body is outstanding.
        let other = try LoopbackClient(port: server.port)
        for index in 0..<3 {
            #expect(other.request("GET", "/other/\(index)")?.text == "GET /other/\(index) 0")
        }

        Self.expectTimedOut(stalled.readResponse())
        #expect(stalled.isClosedByServer())
        #expect(server.requestTargets == ["/other/0", "/other/1", "/other/2"])
        #expect(other.request("GET", "/after")?.status == 200)
    }
}
