import Foundation
import PortoutCore
import PortoutTestSupport
import Testing

@testable import PortoutHTTP

/// Heads, bodies and trailers over the server's limits, against a 1,024-byte head and 4,096-byte body limit.
/// Each is rejected as soon as the limit is passed, without waiting for the rest of the request, the connection
/// closes, and nothing reaches the handler.
struct OversizedRequestTests {
    static let maxHeaderBytes = 1024
    static let maxBodyBytes = 4096

    static func start() throws -> RecordingServer {
        try RecordingServer { limits in
            limits.maxHeaderBytes = Self.maxHeaderBytes
            limits.maxBodyBytes = Self.maxBodyBytes
        }
    }

    /// Sends `bytes`, which stop short of a complete request, and checks the single response and the close.
    static func expectRejected(
        _ bytes: String,
        status: Int,
        code: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)
        client.send(bytes)
        let response = client.readResponse()
        #expect(response?.status == status, sourceLocation: sourceLocation)
        #expect(response?.json?.objectValue?["code"] == .string(code), sourceLocation: sourceLocation)
        #expect(response?.header("Connection") == "close", sourceLocation: sourceLocation)
        #expect(client.isClosedByServer(), sourceLocation: sourceLocation)
        #expect(server.requests.isEmpty, sourceLocation: sourceLocation)
    }

    static let head = "POST /oversized HTTP/1.1\r\nHost: 127.0.0.1\r\n"

    /// No body byte is sent, so a 413 shows the server decided from the head alone.
    @Test(arguments: ["4097", "100000000000000000"], [false, true])
    func contentLengthOverLimitIs413BeforeBody(_ length: String, expectContinue: Bool) throws {
        let expect = expectContinue ? "Expect: 100-continue\r\n" : ""
        // With Expect: 100-continue, the 413 must come in place of the interim response.
        try Self.expectRejected(
            Self.head + "Content-Length: \(length)\r\n\(expect)\r\n",
            status: 413,
            code: "bodyTooLarge"
        )
    }

    /// The size line that takes the body past the limit is rejected before any of that chunk's data is sent,
    /// whether it comes first or after chunks that reach the limit exactly.
    @Test(arguments: [[], [4096], [1024, 1024, 1024, 1024]])
    func chunkedBodyPastLimitIs413(_ earlierChunkSizes: [Int]) throws {
        var request = Self.head + "Transfer-Encoding: chunked\r\n\r\n"
        for size in earlierChunkSizes {
            request += String(size, radix: 16) + "\r\n" + String(repeating: "c", count: size) + "\r\n"
        }
        let overflowingSize = Self.maxBodyBytes - earlierChunkSizes.reduce(0, +) + 1
        request += String(overflowingSize, radix: 16) + "\r\n"
        try Self.expectRejected(request, status: 413, code: "bodyTooLarge")
    }

    /// Heads that pass the limit without ever ending: the 431 comes once the limit is passed.
    static let oversizedHeads: [(String, String)] = [
        ("long request target", "GET /\(String(repeating: "t", count: 1100)) HTTP/1.1\r\n"),
        ("long header line", head + "X-Long: \(String(repeating: "v", count: 1100))\r\n"),
        ("too many header lines", head + String(repeating: "X-A: b\r\n", count: 200)),
        ("too many empty lines before the request line", String(repeating: "\r\n", count: 600)),
        ("header line without its end", head + "X-Unending: \(String(repeating: "v", count: 1100))"),
    ]

    @Test(arguments: Self.oversizedHeads.map(\.0))
    func headOverLimitIs431(_ name: String) throws {
        let bytes = try #require(Self.oversizedHeads.first { $0.0 == name }?.1)
        try Self.expectRejected(bytes, status: 431, code: "headersTooLarge")
    }

    /// Trailers are held to the head limit separately from the head.
    @Test(arguments: [1, 200])
    func trailersOverLimitAre431(_ lineCount: Int) throws {
        let lineLength = (Self.maxHeaderBytes + 100) / lineCount
        let line = "X-T: " + String(repeating: "v", count: max(1, lineLength - 7)) + "\r\n"
        let request =
            Self.head + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
            + String(repeating: line, count: lineCount)
        try Self.expectRejected(request, status: 431, code: "headersTooLarge")
    }

    /// A trailer section of exactly the head limit, its final CRLF included, is served, and one byte more is not.
    @Test func trailerLimitIncludesFinalCRLF() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        for (size, status) in [(Self.maxHeaderBytes, 200), (Self.maxHeaderBytes + 1, 431)] {
            let trailers = "X-T: " + String(repeating: "v", count: size - 9) + "\r\n\r\n"
            #expect(trailers.utf8.count == size)
            let client = try LoopbackClient(port: server.port)
            client.send(Self.head + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n" + trailers)
            #expect(client.readResponse()?.status == status)
        }
    }

    /// The limits themselves are allowed, so the rejections above come from passing them.
    @Test func requestsAtLimitsServed() throws {
        let server = try Self.start()
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port)

        let body = String(repeating: "b", count: Self.maxBodyBytes)
        client.send(Self.head + "Content-Length: \(body.utf8.count)\r\n\r\n" + body)
        #expect(client.readResponse()?.text == "POST /oversized \(Self.maxBodyBytes)")

        let half = String(repeating: "c", count: Self.maxBodyBytes / 2)
        let halfSize = String(half.utf8.count, radix: 16)
        client.send(
            Self.head
                + "Transfer-Encoding: chunked\r\n\r\n\(halfSize)\r\n\(half)\r\n\(halfSize)\r\n\(half)\r\n0\r\n\r\n"
        )
        #expect(client.readResponse()?.text == "POST /oversized \(Self.maxBodyBytes)")

        let start = "GET /at-limit HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "
        let padding = String(repeating: "p", count: Self.maxHeaderBytes - start.utf8.count - 4)
        let fullHead = start + padding + "\r\n\r\n"
        #expect(fullHead.utf8.count == Self.maxHeaderBytes)
        client.send(fullHead)
        #expect(client.readResponse()?.text == "GET /at-limit 0")
        #expect(server.requests.count == 3)
    }
}
