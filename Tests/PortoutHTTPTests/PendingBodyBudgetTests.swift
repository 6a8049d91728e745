import Foundation
import PortoutCore
import PortoutTestSupport
import Testing

@testable import PortoutHTTP

/// The server-wide budget for request bodies, `limits.maxPendingBodyBytes`, here two maximal 4,096-byte bodies.
/// A request whose body does not fit gets 503 from its head alone and the connection closes. Requests without a
/// body are still served, and the budget is released as bodies get their responses or their connections close.
struct PendingBodyBudgetTests {
    static let maxBodyBytes = 4096

    static func start() throws -> RecordingServer {
        try RecordingServer { limits in
            limits.maxBodyBytes = Self.maxBodyBytes
            limits.maxPendingBodyBytes = 2 * Self.maxBodyBytes
        }
    }

    static func post(_ target: String, length: Int, sending sent: Int) -> String {
        "POST \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(length)\r\n\r\n"
            + String(repeating: "b", count: sent)
    }

    /// Polls until the server has `bytes` reserved, for up to five seconds.
    static func waitForReserved(_ server: RecordingServer, _ bytes: Int) -> Bool {
        for _ in 0..<500 {
            if server.server.reservedBodyBytes == bytes {
                return true
            }
            usleep(10_000)
        }
        return false
    }

    static func expectBusy(_ client: LoopbackClient, sourceLocation: SourceLocation = #_sourceLocation) {
        let response = client.readResponse()
        #expect(response?.status == 503, sourceLocation: sourceLocation)
        #expect(response?.json?.objectValue?["code"] == "serverBusy", sourceLocation: sourceLocation)
        #expect(response?.header("Retry-After") == "1", sourceLocation: sourceLocation)
        #expect(response?.header("Connection") == "close", sourceLocation: sourceLocation)
        #expect(client.isClosedByServer(), sourceLocation: sourceLocation)
    }

    @Test func bodyOverBudgetGets503AndBudgetReturns() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let first = try LoopbackClient(port: server.port)
        let second = try LoopbackClient(port: server.port)
        first.send(Self.post("/first", length: Self.maxBodyBytes, sending: 10))
        second.send(Self.post("/second", length: Self.maxBodyBytes, sending: 10))
        #expect(Self.waitForReserved(server, 2 * Self.maxBodyBytes))

        let small = try LoopbackClient(port: server.port)
        small.send(Self.post("/small", length: 100, sending: 100))
        Self.expectBusy(small)
        let chunked = try LoopbackClient(port: server.port)
        chunked.send("POST /chunked HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        Self.expectBusy(chunked)
        let bodiless = try LoopbackClient(port: server.port)
        #expect(bodiless.request("GET", "/bodiless")?.text == "GET /bodiless 0")

        // The first body completes and gets its response, which releases its share.
        first.send(String(repeating: "b", count: Self.maxBodyBytes - 10))
        #expect(first.readResponse()?.text == "POST /first \(Self.maxBodyBytes)")
        #expect(Self.waitForReserved(server, Self.maxBodyBytes))
        let later = try LoopbackClient(port: server.port)
        later.send(Self.post("/later", length: 100, sending: 100))
        #expect(later.readResponse()?.text == "POST /later 100")

        // A connection that closes mid-body releases its share too.
        second.resetOnClose()
        _ = consume second
        #expect(Self.waitForReserved(server, 0))
        #expect(!server.requestTargets.contains("/small"))
        #expect(!server.requestTargets.contains("/chunked"))
        #expect(!server.requestTargets.contains("/second"))
    }

    /// A chunked body reserves the whole body limit, because its size is unknown until its last chunk.
    @Test func chunkedBodyReservesBodyLimit() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let chunked = try LoopbackClient(port: server.port)
        chunked.send("POST /chunked HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        #expect(Self.waitForReserved(server, Self.maxBodyBytes))
        chunked.send("0\r\n\r\n")
        #expect(chunked.readResponse()?.text == "POST /chunked 5")
        #expect(Self.waitForReserved(server, 0))
    }
}
