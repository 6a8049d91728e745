import Foundation
import PortoutCore
import PortoutTestSupport
import Testing

@testable import PortoutHTTP

/// The server-wide count of bytes read for requests that have no response yet, against
/// `limits.maxBufferedRequestBytes`, here 8,192. A read that would pass it gets 503 and the connection closes.
/// A head alone counts only its own bytes, and the count falls as requests get their responses or their
/// connections close.
struct BufferedRequestBudgetTests {
    static let maxBufferedRequestBytes = 8192

    static func start() throws -> RecordingServer {
        try RecordingServer { limits in
            limits.maxBodyBytes = 4096
            limits.maxBufferedRequestBytes = Self.maxBufferedRequestBytes
        }
    }

    static func head(_ target: String, length: Int) -> String {
        "POST \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(length)\r\n\r\n"
    }

    static func body(_ count: Int) -> String {
        String(repeating: "b", count: count)
    }

    /// Opens a connection that sends a head announcing `length` body bytes and then only `sending` of them. Returns
    /// it with the number of bytes sent, which the server counts until the request gets its response.
    static func sendPartial(
        _ server: RecordingServer, _ target: String, length: Int, sending: Int
    ) throws -> (client: LoopbackClient, bytes: Int) {
        let client = try LoopbackClient(port: server.port)
        let head = Self.head(target, length: length)
        client.send(head + Self.body(sending))
        return (client, head.utf8.count + sending)
    }

    /// Opens a connection whose request stops 96 body bytes short, so that it takes about half the limit until
    /// `finishHolding` sends the rest. Returns it with the bytes it takes.
    static func holdHalfOfLimit(_ server: RecordingServer) throws -> (client: LoopbackClient, bytes: Int) {
        let held = try Self.sendPartial(server, "/holder", length: 4096, sending: 4000)
        #expect(Self.waitForBuffered(server, held.bytes))
        return held
    }

    static func finishHolding(_ holder: LoopbackClient) {
        holder.send(Self.body(96))
        #expect(holder.readResponse()?.text == "POST /holder 4096")
    }

    /// Polls until the server counts `bytes` buffered, for up to five seconds.
    static func waitForBuffered(_ server: RecordingServer, _ bytes: Int) -> Bool {
        for _ in 0..<500 {
            if server.server.bufferedBytes == bytes {
                return true
            }
            usleep(10_000)
        }
        return false
    }

    @Test func requestOverBudgetGets503AndBudgetReturns() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let (first, firstBytes) = try Self.sendPartial(server, "/first", length: 2000, sending: 1000)
        #expect(Self.waitForBuffered(server, firstBytes))
        let (second, secondBytes) = try Self.sendPartial(server, "/second", length: 4096, sending: 4095)
        let buffered = firstBytes + secondBytes
        #expect(Self.waitForBuffered(server, buffered))

        // Fewer than 3,000 bytes are left, so this request cannot be read whole.
        let third = try LoopbackClient(port: server.port)
        third.send(Self.head("/third", length: 4000) + Self.body(4000))
        let response = third.readResponse()
        #expect(response?.status == 503)
        #expect(response?.json?.objectValue?["code"] == "serverBusy")
        #expect(response?.header("Retry-After") == "1")
        #expect(response?.header("Connection") == "close")
        #expect(third.isClosedByServer())
        #expect(Self.waitForBuffered(server, buffered))
        #expect(server.server.bufferFullRejectionCounts.total == 1)

        // A small request still fits, and a completed body gets its response and releases its bytes.
        let bodiless = try LoopbackClient(port: server.port)
        #expect(bodiless.request("GET", "/bodiless")?.text == "GET /bodiless 0")
        first.send(Self.body(1000))
        #expect(first.readResponse()?.text == "POST /first 2000")
        #expect(Self.waitForBuffered(server, secondBytes))

        // A connection reset mid-body releases its bytes too.
        second.resetOnClose()
        _ = consume second
        #expect(Self.waitForBuffered(server, 0))
        #expect(!server.requestTargets.contains("/third"))
        #expect(!server.requestTargets.contains("/second"))
    }

    /// A head that announces a large body costs only the bytes sent, so heads alone cannot use up the budget.
    @Test func headsAloneCountOnlyTheirBytes() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let head = Self.head("/announced", length: 4096)
        var clients: [LoopbackClient] = []
        for _ in 0..<10 {
            let client = try LoopbackClient(port: server.port)
            client.send(head)
            clients.append(client)
        }
        #expect(Self.waitForBuffered(server, 10 * head.utf8.count))
        let fresh = try LoopbackClient(port: server.port)
        fresh.send(Self.head("/fresh", length: 4096) + Self.body(4096))
        #expect(fresh.readResponse()?.text == "POST /fresh 4096")
        clients.removeAll()
        #expect(Self.waitForBuffered(server, 0))
    }

    @Test func chunkedBodyCountsBytesAsTheyArrive() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let chunked = try LoopbackClient(port: server.port)
        let start = "POST /chunked HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        chunked.send(start)
        // The size line "5\r\n" and the CRLF after the data are parsed away; the head and body still count.
        #expect(Self.waitForBuffered(server, start.utf8.count - 5))
        chunked.send("0\r\n\r\n")
        #expect(chunked.readResponse()?.text == "POST /chunked 5")
        #expect(Self.waitForBuffered(server, 0))
    }

    /// Chunk framing stops counting once parsed, so a body sent in one-byte chunks, several times the limit on the
    /// wire, counts only its head and body bytes.
    @Test func oneByteChunksCountOnlyBodyBytes() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let body = String(repeating: "1\r\nb\r\n", count: 4000) + "0\r\n\r\n"
        #expect(body.utf8.count > Self.maxBufferedRequestBytes * 2)
        let client = try LoopbackClient(port: server.port)
        client.send("POST /chunked HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        #expect(client.readResponse()?.text == "POST /chunked 4000")
        #expect(server.server.bufferFullRejectionCounts.total == 0)
        #expect(Self.waitForBuffered(server, 0))
    }

    /// A request that fits in the room left is served even when more bytes than the room arrive behind it at once:
    /// the read stops at the room. Its response gives its bytes back, and then the request behind it fits too.
    @Test func fittingRequestServedDespiteBytesBehind() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let (holder, holderBytes) = try Self.holdHalfOfLimit(server)

        let fitting = Self.head("/fits", length: 1000) + Self.body(1000)
        let behind = Self.head("/behind", length: 4000) + Self.body(4000)
        #expect(fitting.utf8.count < Self.maxBufferedRequestBytes - holderBytes)
        #expect(fitting.utf8.count + behind.utf8.count > Self.maxBufferedRequestBytes - holderBytes)
        let client = try LoopbackClient(port: server.port)
        client.send(fitting + behind)
        #expect(client.readResponse()?.text == "POST /fits 1000")
        #expect(client.readResponse()?.text == "POST /behind 4000")
        #expect(server.server.bufferFullRejectionCounts.total == 0)

        Self.finishHolding(holder)
        #expect(Self.waitForBuffered(server, 0))
    }

    /// Bytes pipelined behind a request that the handler has are left in the socket while the server is out of room,
    /// instead of being counted past the limit, and are read once there is room again.
    @Test func readAheadWaitsForRoom() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let (holder, holderBytes) = try Self.holdHalfOfLimit(server)

        let pipelining = try LoopbackClient(port: server.port)
        let slow = "GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        pipelining.send(slow)
        usleep(50_000)
        let followers = (0..<100).map { "GET /follower/\($0) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" }.joined()
        pipelining.send(followers)
        usleep(50_000)
        #expect(server.server.bufferedBytes == holderBytes + slow.utf8.count)

        Self.finishHolding(holder)
        #expect(pipelining.readResponse()?.text == "GET /slow 0")
        for index in 0..<100 {
            #expect(pipelining.readResponse()?.text == "GET /follower/\(index) 0")
        }
        #expect(Self.waitForBuffered(server, 0))
    }

    /// One client address may hold only its share of the limit, in the ratio of `maxConnectionsPerClient` to
    /// `maxConnections`: here 4 of 16, so 16,384 of 65,536 bytes. Partial bodies from one client then get that
    /// client a 503 while another client is still served.
    @Test func clientShareStopsOneAddress() throws {
        let server = try RecordingServer { limits in
            limits.maxHeaderBytes = 1024
            limits.maxBodyBytes = 4096
            limits.maxBufferedRequestBytes = 65_536
            limits.maxConnections = 16
            limits.maxConnectionsPerClient = 4
        }
        defer { server.shutdown() }
        #expect(server.server.configuration.maxBufferedRequestBytesPerClient == 16_384)
        var partial: [LoopbackClient] = []
        var partialBytes = 0
        for index in 0..<3 {
            let (client, bytes) = try Self.sendPartial(server, "/partial/\(index)", length: 4096, sending: 4090)
            partial.append(client)
            partialBytes += bytes
        }
        #expect(Self.waitForBuffered(server, partialBytes))

        // The fourth partial body would take this address past 16,384 bytes.
        let (over, _) = try Self.sendPartial(server, "/over", length: 4096, sending: 4090)
        let rejection = over.readResponse()
        #expect(rejection?.status == 503)
        #expect(rejection?.json?.objectValue?["code"] == "serverBusy")
        #expect(over.isClosedByServer())
        #expect(server.server.bufferFullRejectionCounts.perClient == 1)
        #expect(server.server.bufferFullRejectionCounts.total == 0)

        let elsewhere = try LoopbackClient(port: server.port, sourceHost: "127.0.0.2")
        elsewhere.send(Self.head("/elsewhere", length: 4096) + Self.body(4096))
        #expect(elsewhere.readResponse()?.text == "POST /elsewhere 4096")

        // Closing one of them gives the address its room back.
        partial.removeLast()
        #expect(Self.waitForBuffered(server, partialBytes / 3 * 2))
        let (again, _) = try Self.sendPartial(server, "/again", length: 4096, sending: 4096)
        #expect(again.readResponse()?.text == "POST /again 4096")
        partial.removeAll()
        #expect(Self.waitForBuffered(server, 0))
    }
}
