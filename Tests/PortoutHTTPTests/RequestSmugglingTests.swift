import Foundation
import PortoutCore
import PortoutTestSupport
import Testing

@testable import PortoutHTTP

/// Requests that two HTTP/1.1 parsers could frame differently, so that a proxy in front and this server would
/// disagree on where one request ends and the next begins.
///
/// Most attempts carry a second request, `GET /smuggled`, that one reading takes as body and another as a
/// request of its own. Each must be rejected with 400 (505 for an unsupported version, 413 for a chunk size past
/// the body limit) and the connection closed, and the handler must never get the smuggled request. Valid
/// spellings that the server accepts are tested too: each must be read exactly one way.
struct RequestSmugglingTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let bytes: String
        /// Statuses of the responses in order. The last closes the connection in a rejected case.
        let statuses: [Int]
        /// Targets of the requests the handler must get, in order, and no others.
        let handled: [String]

        var testDescription: String {
            self.name
        }
    }

    static let host = "Host: 127.0.0.1\r\n"
    static let post = "POST /first HTTP/1.1\r\n" + host
    static let smuggled = "GET /smuggled HTTP/1.1\r\n" + host + "\r\n"
    /// A chunked body whose only chunk is the smuggled request.
    static let chunkedSmuggled = String(smuggled.utf8.count, radix: 16) + "\r\n" + smuggled + "\r\n0\r\n\r\n"

    static func rejected(_ name: String, _ bytes: String, status: Int = 400) -> Case {
        Case(name: name, bytes: bytes, statuses: [status], handled: [])
    }

    /// Returns a rejected case: a POST with the chunked body `chunks` and the smuggled request after it.
    static func chunked(_ name: String, _ chunks: String, status: Int = 400) -> Case {
        Self.rejected(name, Self.post + "Transfer-Encoding: chunked\r\n\r\n" + chunks + Self.smuggled, status: status)
    }

    static let framingConflicts: [Case] = [
        rejected(
            "Content-Length then Transfer-Encoding",
            post + "Content-Length: \(5 + smuggled.utf8.count)\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                + smuggled
        ),
        rejected(
            "Transfer-Encoding then Content-Length",
            post + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" + chunkedSmuggled
        ),
        rejected(
            "Transfer-Encoding in HTTP/1.0",
            "POST /first HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedSmuggled
        ),
        rejected(
            "Transfer-Encoding and Content-Length in HTTP/1.0",
            "POST /first HTTP/1.0\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedSmuggled
        ),
    ]

    /// Content-Length values with the smuggled request right after a five-byte body.
    static let contentLengthFields: [(name: String, field: String)] = [
        ("duplicate equal Content-Length", "Content-Length: 5\r\nContent-Length: 5"),
        ("conflicting Content-Length", "Content-Length: 5\r\nContent-Length: \(5 + smuggled.utf8.count)"),
        ("Content-Length list", "Content-Length: 5, 5"),
        ("Content-Length list without a space", "Content-Length: 5,5"),
        ("Content-Length list of different values", "Content-Length: 5, \(5 + smuggled.utf8.count)"),
        ("signed Content-Length", "Content-Length: +5"),
        ("negative Content-Length", "Content-Length: -5"),
        ("hexadecimal Content-Length", "Content-Length: 0x5"),
        ("empty Content-Length", "Content-Length: "),
        ("Content-Length with a space inside", "Content-Length: 5 5"),
        ("Content-Length that wraps at 64 bits to 5", "Content-Length: 18446744073709551621"),
        ("white space before the colon of Content-Length", "Content-Length : 5"),
        ("folded Content-Length", "Content-Length: 5\r\n \(smuggled.utf8.count)"),
    ]
    static let contentLengthSpellings = contentLengthFields.map { name, field in
        rejected(name, post + field + "\r\n\r\nhello" + smuggled)
    }

    /// Transfer-Encoding values with a chunked body that carries the smuggled request. A reading that does not
    /// take the value as chunked finds no body and parses the chunk as the next request.
    static let transferEncodingFields: [(name: String, field: String)] = [
        ("white space before the colon of Transfer-Encoding", "Transfer-Encoding : chunked"),
        ("chunked then identity", "Transfer-Encoding: chunked, identity"),
        // Chunked is last here, so RFC 9112 section 6.1 recommends 501 for the coding the server does not know.
        // A 400 rejects the request and closes the connection just as well.
        ("identity then chunked", "Transfer-Encoding: identity, chunked"),
        ("gzip then chunked", "Transfer-Encoding: gzip, chunked"),
        ("xchunked", "Transfer-Encoding: xchunked"),
        ("chunked with a suffix", "Transfer-Encoding: chunkedx"),
        ("chunked twice in one field", "Transfer-Encoding: chunked, chunked"),
        ("chunked in two fields", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"),
        ("chunked and identity in two fields", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity"),
        ("quoted chunked", "Transfer-Encoding: \"chunked\""),
        ("chunked with a parameter", "Transfer-Encoding: chunked;q=1"),
        ("two words", "Transfer-Encoding: chunked chunked"),
        ("vertical tab before chunked", "Transfer-Encoding: \u{0B}chunked"),
        ("form feed after chunked", "Transfer-Encoding: chunked\u{0C}"),
        ("folded Transfer-Encoding", "Transfer-Encoding: identity\r\n chunked"),
        ("empty Transfer-Encoding", "Transfer-Encoding: "),
    ]
    static let transferEncodingSpellings = transferEncodingFields.map { name, field in
        rejected(name, post + field + "\r\n\r\n" + chunkedSmuggled)
    }

    static let chunkSizeLines: [Case] = [
        chunked("chunk size past 64 bits", "10000000000000005\r\nhello\r\n0\r\n\r\n"),
        chunked("chunk size of 16 hexadecimal digits", "ffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        // RFC 9112 allows leading zeros, but a size longer than 15 digits is rejected before it could overflow.
        chunked("chunk size with 17 leading zeros", "000000000000000005\r\nhello\r\n0\r\n\r\n"),
        chunked("chunk size with a 0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
        chunked("negative chunk size", "-5\r\nhello\r\n0\r\n\r\n"),
        chunked("signed chunk size", "+5\r\nhello\r\n0\r\n\r\n"),
        chunked("non-hexadecimal chunk size", "5g\r\nhello\r\n0\r\n\r\n"),
        chunked("empty chunk size line", "\r\nhello\r\n0\r\n\r\n"),
        chunked("space before the chunk size", " 5\r\nhello\r\n0\r\n\r\n"),
        chunked("space after the chunk size", "5 \r\nhello\r\n0\r\n\r\n"),
        chunked("tab after the chunk size", "5\t\r\nhello\r\n0\r\n\r\n"),
        chunked("chunk data longer than its size", "3\r\nhello\r\n0\r\n\r\n"),
        chunked("chunk data shorter than its size", "7\r\nhello\r\n0\r\n\r\n"),
        chunked("chunk size of 15 digits past the body limit", "fffffffffffffff\r\nhello\r\n0\r\n\r\n", status: 413),
    ]

    static let chunkExtensions: [Case] = [
        chunked("extension without a name", "5;\r\nhello\r\n0\r\n\r\n"),
        chunked("extension with an empty value", "5;a=\r\nhello\r\n0\r\n\r\n"),
        // RFC 9112 section 7.1.1 allows white space (BWS) around extensions from old senders. The server rejects it
        // on purpose, as it rejects white space around the chunk size.
        chunked("white space before an extension", "5 ;a=b\r\nhello\r\n0\r\n\r\n"),
        chunked("white space around an extension's equals sign", "5;a = b\r\nhello\r\n0\r\n\r\n"),
        chunked("unterminated quoted extension", "5;a=\"b\r\nhello\r\n0\r\n\r\n"),
        chunked("LF inside a quoted extension", "5;a=\"b\nc\"\r\nhello\r\n0\r\n\r\n"),
        chunked("NUL inside a quoted extension", "5;a=\"b\u{0}c\"\r\nhello\r\n0\r\n\r\n"),
        chunked("extension line over 4 KiB", "5;a=\(String(repeating: "v", count: 5000))\r\nhello\r\n0\r\n\r\n"),
        // Each line is short, but together they would let a client send unbounded bytes the body limit never counts.
        chunked(
            "extensions over 4 KiB in total",
            String(repeating: "1;a=\(String(repeating: "v", count: 1000))\r\nx\r\n", count: 5) + "0\r\n\r\n"
        ),
    ]

    static let lineEndings: [Case] = [
        chunked("bare LF after the chunk size", "5\nhello\r\n0\r\n\r\n"),
        chunked("bare LF after chunk data", "5\r\nhello\n0\r\n\r\n"),
        chunked("bare CR after the chunk size", "5\rhello\r\n0\r\n\r\n"),
        chunked("bare CR after chunk data", "5\r\nhello\r0\r\n\r\n"),
        chunked("bare LF after the last chunk", "5\r\nhello\r\n0\n\r\n"),
        chunked("bare LF ending the trailers", "5\r\nhello\r\n0\r\n\n"),
        chunked("bare LF after a trailer", "5\r\nhello\r\n0\r\nX-Trailer: 1\n\r\n"),
        rejected("bare LF in the head", post + "X-A: b\nContent-Length: 5\r\n\r\nhello" + smuggled),
        rejected("bare CR in the head", post + "X-A: b\rContent-Length: 5\r\n\r\nhello" + smuggled),
        rejected("bare LF ending the head", post + "Content-Length: 5\r\n\nhello" + smuggled),
        rejected("bare LF ending the request line", "POST /first HTTP/1.1\n" + host + "Content-Length: 5\r\n\r\nhello"),
    ]

    static let foldedLines: [Case] = [
        rejected("folded header line", post + "X-A: b\r\n c\r\nContent-Length: 5\r\n\r\nhello" + smuggled),
        rejected("header line folded with a tab", post + "X-A: b\r\n\tc\r\nContent-Length: 5\r\n\r\nhello" + smuggled),
        rejected("white space before the first header", "POST /first HTTP/1.1\r\n " + host + "\r\n" + smuggled),
        chunked("folded trailer", "5\r\nhello\r\n0\r\nX-Trailer: 1\r\n 2\r\n\r\n"),
    ]

    static let nulBytes: [Case] = [
        rejected("NUL in a header value", post + "X-A: b\u{0}c\r\nContent-Length: 5\r\n\r\nhello" + smuggled),
        rejected("NUL in a header name", post + "X-\u{0}A: b\r\nContent-Length: 5\r\n\r\nhello" + smuggled),
        rejected("NUL in the request target", "GET /a\u{0}b HTTP/1.1\r\n" + host + "\r\n" + smuggled),
        rejected("NUL in the method", "G\u{0}ET /first HTTP/1.1\r\n" + host + "\r\n" + smuggled),
        rejected("NUL before the request line", "\u{0}GET /first HTTP/1.1\r\n" + host + "\r\n" + smuggled),
        rejected("NUL ending a header value", post + "Content-Length: 5\u{0}\r\n\r\nhello" + smuggled),
        chunked("NUL in a trailer value", "5\r\nhello\r\n0\r\nX-Trailer: a\u{0}b\r\n\r\n"),
    ]

    static let hostFields: [Case] =
        [
            rejected("two Host fields", "GET /first HTTP/1.1\r\n" + host + "Host: other.example\r\n\r\n" + smuggled),
            rejected("no Host in HTTP/1.1", "GET /first HTTP/1.1\r\n\r\n" + smuggled),
        ]
        + invalidHostValues.map { name, value in
            rejected(name, "GET /first HTTP/1.1\r\nHost: \(value)\r\n\r\n" + smuggled)
        }

    /// RFC 9112 section 3.2 requires a 400 for a Host value that is not `uri-host [ ":" port ]`.
    static let invalidHostValues: [(name: String, value: String)] = [
        ("Host with a space", "127.0.0.1 other.example"),
        ("Host with a path", "127.0.0.1/first"),
        ("Host with user information", "user@127.0.0.1"),
        ("Host with a query", "127.0.0.1?x"),
        ("Host with a non-numeric port", "127.0.0.1:http"),
        ("Host with two ports", "127.0.0.1:80:81"),
        ("Host with an unclosed IP literal", "[::1"),
        ("Host with text after an IP literal", "[::1]x"),
        ("Host with an invalid percent-encoding", "b%zzcher.example"),
        ("Host with a comma-separated list", "127.0.0.1, other.example"),
    ]

    static let requestLines: [Case] = [
        rejected("two spaces in the request line", "GET  /first HTTP/1.1\r\n" + host + "\r\n" + smuggled),
        rejected("tab in the request line", "GET\t/first HTTP/1.1\r\n" + host + "\r\n" + smuggled),
        rejected("lowercase version", "GET /first http/1.1\r\n" + host + "\r\n" + smuggled),
        rejected("request line without a version", "GET /first\r\n" + host + "\r\n" + smuggled),
        rejected("HTTP/2.0 request line", "GET /first HTTP/2.0\r\n" + host + "\r\n" + smuggled, status: 505),
    ]

    /// A request the server handles, then bytes it must not take as a request.
    static let pipelined: [Case] = [
        Case(
            name: "request after a malformed one",
            bytes: "GET /first HTTP/1.1\r\n" + host + "\r\n" + post + "Content-Length: 5, 5\r\n\r\nhello" + smuggled,
            statuses: [200, 400],
            handled: ["/first"]
        ),
        Case(
            name: "request after Connection: close",
            bytes: "GET /first HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n" + smuggled,
            statuses: [200],
            handled: ["/first"]
        ),
        Case(
            name: "request after an upgrade request",
            bytes: "GET /first HTTP/1.1\r\n" + host + "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n" + smuggled,
            statuses: [200],
            handled: ["/first"]
        ),
        Case(
            name: "request after HTTP/1.0 without keep-alive",
            bytes: "GET /first HTTP/1.0\r\n\r\n" + smuggled,
            statuses: [200],
            handled: ["/first"]
        ),
        // The field is not Transfer-Encoding, so the request has no body and the chunk is a malformed request.
        Case(
            name: "Transfer_Encoding with an underscore",
            bytes: post + "Transfer_Encoding: chunked\r\n\r\n" + chunkedSmuggled,
            statuses: [200, 400],
            handled: ["/first"]
        ),
    ]

    static let rejectedCases =
        framingConflicts + contentLengthSpellings + transferEncodingSpellings + chunkSizeLines + chunkExtensions
        + lineEndings + foldedLines + nulBytes + hostFields + requestLines + pipelined

    @Test(arguments: Self.rejectedCases)
    func smugglingAttemptRejected(_ testCase: Case) throws {
        let server = try RecordingServer(eventLoops: 1)
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port, readTimeoutSeconds: 5)
        client.send(testCase.bytes)
        var responses: [LoopbackClient.Response] = []
        while responses.count <= testCase.statuses.count, let response = client.readResponse() {
            responses.append(response)
        }
        #expect(responses.map(\.status) == testCase.statuses)
        #expect(responses.last?.header("Connection") == "close")
        #expect(client.isClosedByServer())
        #expect(server.requestTargets == testCase.handled)
    }

    /// Requests with a second one pipelined behind: each response text is `METHOD target bodyLength`.
    struct ToleratedCase: Sendable, CustomTestStringConvertible {
        let name: String
        let bytes: String
        let responses: [String]

        var testDescription: String {
            self.name
        }
    }

    static let second = "GET /second HTTP/1.1\r\n" + host + "\r\n"
    static let chunkedHello = "5\r\nhello\r\n0\r\n\r\n"

    /// Spellings that RFC 9112 and RFC 9110 make valid. They are optional white space around a field value,
    /// case-insensitive coding and field names, empty list elements, leading zeros and well-formed chunk
    /// extensions. Framing fields among the trailers frame nothing, and Host may be any host with a port.
    static let toleratedPosts: [(name: String, rest: String, response: String)] = [
        ("extra spaces before chunked", "Transfer-Encoding:    chunked\r\n\r\n" + chunkedHello, "POST /first 5"),
        ("tab after chunked", "Transfer-Encoding: chunked\t\r\n\r\n" + chunkedHello, "POST /first 5"),
        ("capitalized chunked", "Transfer-Encoding: Chunked\r\n\r\n" + chunkedHello, "POST /first 5"),
        ("uppercase chunked", "Transfer-Encoding: CHUNKED\r\n\r\n" + chunkedHello, "POST /first 5"),
        ("lowercase field name", "transfer-encoding: chunked\r\n\r\n" + chunkedHello, "POST /first 5"),
        ("empty list element before chunked", "Transfer-Encoding: , chunked\r\n\r\n" + chunkedHello, "POST /first 5"),
        ("Content-Length with leading zeros", "Content-Length: 005\r\n\r\nhello", "POST /first 5"),
        ("Content-Length with trailing white space", "Content-Length: 5 \t\r\n\r\nhello", "POST /first 5"),
        (
            "well-formed chunk extensions",
            "Transfer-Encoding: chunked\r\n\r\n5;a=b;c=\"d e\\\"\";f\r\nhello\r\n0;g\r\n\r\n", "POST /first 5"
        ),
        (
            "framing fields among the trailers",
            "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
                + "Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /first 5"
        ),
        (
            "request inside a Content-Length body",
            "Content-Length: \(smuggled.utf8.count)\r\n\r\n" + smuggled, "POST /first \(smuggled.utf8.count)"
        ),
    ]

    static let toleratedHosts: [(name: String, field: String)] = [
        ("empty Host", "Host: "),
        ("Host with a port", "Host: 127.0.0.1:8080"),
        ("IPv6 Host with a port", "Host: [::1]:8080"),
        ("Host with percent-encoding", "Host: b%C3%BCcher.example"),
    ]

    static let toleratedCases: [ToleratedCase] =
        toleratedPosts.map { post in
            ToleratedCase(
                name: post.name,
                bytes: Self.post + post.rest + Self.second,
                responses: [post.response, "GET /second 0"]
            )
        }
        + toleratedHosts.map { host in
            ToleratedCase(
                name: host.name,
                bytes: "GET /first HTTP/1.1\r\n" + host.field + "\r\n\r\n" + Self.second,
                responses: ["GET /first 0", "GET /second 0"]
            )
        }

    @Test(arguments: Self.toleratedCases)
    func toleratedSpellingReadOneWay(_ testCase: ToleratedCase) throws {
        let server = try RecordingServer(eventLoops: 1)
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port, readTimeoutSeconds: 5)
        client.send(testCase.bytes)
        let responses = testCase.responses.compactMap { _ in client.readResponse() }
        #expect(responses.map(\.text) == testCase.responses)
        #expect(responses.allSatisfy { $0.status == 200 })
        #expect(server.requestTargets == ["/first", "/second"])
        // The connection stays open for more requests.
        #expect(client.request("GET", "/third")?.text == "GET /third 0")
    }

    /// RFC 9112 section 3.2.2: with an absolute-form target the server ignores Host, whatever its value.
    @Test func absoluteFormTargetOutranksHost() throws {
        let server = try RecordingServer(eventLoops: 1)
        defer { server.shutdown() }
        let client = try LoopbackClient(port: server.port, readTimeoutSeconds: 5)
        client.send("GET http://127.0.0.1/absolute?x=1 HTTP/1.1\r\nHost: other.example\r\n\r\n")
        #expect(client.readResponse()?.text == "GET http://127.0.0.1/absolute?x=1 0")
        #expect(server.requests.map { String($0.head.path) } == ["/absolute"])
        #expect(server.requests.map { $0.head.query.map(String.init) } == ["x=1"])
    }
}
