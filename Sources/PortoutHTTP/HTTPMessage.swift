import PortoutCore

/// Header fields in the order received, with names compared case-insensitively.
///
/// Names and values are kept as bytes in one buffer, and a `String` is made only for a field that is read,
/// because a request carries a dozen fields and the relay reads a few of them.
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral {
    public typealias Field = (name: String, value: String)

    /// Every name and value, back to back.
    private var bytes: [UInt8] = []
    /// The offsets of each field's name and value in `bytes`.
    private var spans: [Span] = []

    private struct Span: Sendable {
        var nameStart: Int32
        var valueStart: Int32
        var valueEnd: Int32
    }

    public init() {}

    public init(_ fields: [Field]) {
        for field in fields {
            self.add(name: field.name, value: field.value)
        }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        for (name, value) in elements {
            self.add(name: name, value: value)
        }
    }

    /// Every field as strings, in order.
    public var fields: [Field] {
        self.spans.indices.map(self.field(at:))
    }

    public mutating func add(name: String, value: String) {
        let nameStart = self.bytes.count
        self.bytes.append(contentsOf: name.utf8)
        let valueStart = self.bytes.count
        self.bytes.append(contentsOf: value.utf8)
        self.spans.append(Span(nameStart: Int32(nameStart), valueStart: Int32(valueStart), valueEnd: Int32(self.bytes.count)))
    }

    /// Adds a field from bytes the parser has already checked, without making strings of them.
    mutating func add(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        let nameStart = self.bytes.count
        self.bytes.append(contentsOf: name)
        let valueStart = self.bytes.count
        self.bytes.append(contentsOf: value)
        self.spans.append(Span(nameStart: Int32(nameStart), valueStart: Int32(valueStart), valueEnd: Int32(self.bytes.count)))
    }

    /// Sets aside room for a head of about `byteCount` bytes, so that parsing grows the buffers once.
    mutating func reserveCapacity(byteCount: Int, fields: Int) {
        self.bytes.reserveCapacity(byteCount)
        self.spans.reserveCapacity(fields)
    }

    /// The first value of the named field, or nil.
    public subscript(name: String) -> String? {
        self.firstIndex(of: name).map(self.value(at:))
    }

    /// Returns whether the first value of the named field is valid UTF-8, and true if there is no such field.
    /// Values are read as text with invalid bytes replaced, so a value signed as bytes is checked with this first.
    public func hasValidUTF8(_ name: String) -> Bool {
        guard let index = self.firstIndex(of: name) else { return true }
        let span = self.spans[index]
        return String(validating: self.bytes[Int(span.valueStart)..<Int(span.valueEnd)], as: UTF8.self) != nil
    }

    public func values(_ name: String) -> [String] {
        self.indices(of: name).map(self.value(at:))
    }

    /// Counts the fields with this name without collecting their values.
    public func count(of name: String) -> Int {
        self.find(name).count
    }

    /// Returns the first value of the named field and how many fields have that name, from one pass over the
    /// fields.
    public func lookup(_ name: String) -> (value: String?, count: Int) {
        let (first, count) = self.find(name)
        return (first.map(self.value(at:)), count)
    }

    /// The comma-separated elements of every field with this name, trimmed and lowercased.
    public func tokens(_ name: String) -> [String] {
        self.values(name).flatMap { value in
            value.split(separator: ",").map { element in
                element.trimmingOWS().lowercased()
            }
        }.filter { !$0.isEmpty }
    }

    public var count: Int {
        self.spans.count
    }

    public func makeIterator() -> IndexingIterator<[Field]> {
        self.fields.makeIterator()
    }

    /// Appends every field as `name: value` lines, each ended by CRLF.
    func serialize(into output: inout [UInt8]) {
        for span in self.spans {
            output.append(contentsOf: self.bytes[Int(span.nameStart)..<Int(span.valueStart)])
            output.append(contentsOf: ": ".utf8)
            output.append(contentsOf: self.bytes[Int(span.valueStart)..<Int(span.valueEnd)])
            output.append(contentsOf: "\r\n".utf8)
        }
    }

    private func field(at index: Int) -> Field {
        let span = self.spans[index]
        let name = String(decoding: self.bytes[Int(span.nameStart)..<Int(span.valueStart)], as: UTF8.self)
        return (name, self.value(at: index))
    }

    private func value(at index: Int) -> String {
        let span = self.spans[index]
        return self.bytes.withUnsafeBufferPointer { buffer in
            String(decoding: UnsafeBufferPointer(rebasing: buffer[Int(span.valueStart)..<Int(span.valueEnd)]), as: UTF8.self)
        }
    }

    private func firstIndex(of name: String) -> Int? {
        self.find(name).first
    }

    private func indices(of name: String) -> [Int] {
        var found: [Int] = []
        self.scan(name) { found.append($0) }
        return found
    }

    /// Returns the index of the first field with this name and the number of such fields.
    private func find(_ name: String) -> (first: Int?, count: Int) {
        var first: Int?
        var count = 0
        self.scan(name) { index in
            if first == nil { first = index }
            count += 1
        }
        return (first, count)
    }

    /// Calls `found` with the index of each field with this name, in order, comparing names ASCII
    /// case-insensitively. One plain loop, because every webhook's head takes about fourteen lookups.
    @inline(__always)
    private func scan(_ name: String, _ found: (Int) -> Void) {
        var name = name
        name.withUTF8 { wanted in
            self.bytes.withUnsafeBufferPointer { buffer in
                self.spans.withUnsafeBufferPointer { spans in
                    for index in 0..<spans.count {
                        let span = spans[index]
                        let start = Int(span.nameStart)
                        guard Int(span.valueStart) - start == wanted.count else { continue }
                        var matches = true
                        for offset in 0..<wanted.count
                        where ASCII.lowercased(buffer[start + offset]) != ASCII.lowercased(wanted[offset]) {
                            matches = false
                            break
                        }
                        if matches {
                            found(index)
                        }
                    }
                }
            }
        }
    }
}

extension StringProtocol {
    /// Drops leading and trailing spaces and tabs (RFC 9110 optional white space).
    func trimmingOWS() -> String {
        let bytes = Array(self.utf8)
        var start = 0
        var end = bytes.count
        while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
        while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }
}

public struct HTTPVersion: Sendable, Equatable, CustomStringConvertible {
    public let major: Int
    public let minor: Int

    public static let http1_0 = HTTPVersion(major: 1, minor: 0)
    public static let http1_1 = HTTPVersion(major: 1, minor: 1)

    public var description: String {
        "HTTP/\(self.major).\(self.minor)"
    }
}

/// How a request's body is delimited.
public enum BodyFraming: Sendable, Equatable {
    case none
    case contentLength(Int)
    case chunked
}

/// A request line and its header fields.
public struct HTTPRequestHead: Sendable {
    public let method: String
    /// The request-target exactly as sent.
    public let target: String
    /// The target's path, without the query. An absolute-form target (`http://host/path`, which RFC 9112
    /// requires servers to accept) yields its path, or `/` when it has none.
    public let path: Substring
    public var version: HTTPVersion
    public var headers: HTTPHeaders
    public var framing: BodyFraming
    /// Whether the connection stays open after the response, from the version and `Connection`.
    public var keepAlive: Bool
    /// Whether the client sent `Expect: 100-continue` and waits for an interim response before the body.
    public var expectsContinue: Bool
    /// Whether the client asked to switch protocols, which this server never does.
    public var requestsUpgrade: Bool
    /// Whether an HTTP/1.1 `Expect` field has a member other than `100-continue`, the only one this server meets.
    public var hasUnsupportedExpectation: Bool

    public init(
        method: String, target: String, version: HTTPVersion, headers: HTTPHeaders, framing: BodyFraming,
        keepAlive: Bool, expectsContinue: Bool, requestsUpgrade: Bool, hasUnsupportedExpectation: Bool = false
    ) {
        self.method = method
        self.target = target
        self.path = Self.path(of: target)
        self.version = version
        self.headers = headers
        self.framing = framing
        self.keepAlive = keepAlive
        self.expectsContinue = expectsContinue
        self.requestsUpgrade = requestsUpgrade
        self.hasUnsupportedExpectation = hasUnsupportedExpectation
    }

    /// The target's query, without the `?`, or nil.
    public var query: Substring? {
        guard let question = self.target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return nil }
        return self.target[self.target.utf8.index(after: question)...]
    }

    /// Finds the path in a target. The target is visible ASCII, so byte offsets are character boundaries.
    private static func path(of target: String) -> Substring {
        let bytes = target.utf8
        var start = bytes.startIndex
        if bytes.first != UInt8(ascii: "/"), let authority = Self.indexAfterScheme(bytes) {
            guard let pathStart = bytes[authority...].firstIndex(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") }),
                bytes[pathStart] == UInt8(ascii: "/")
            else {
                return "/"
            }
            start = pathStart
        }
        let end = bytes[start...].firstIndex(of: UInt8(ascii: "?")) ?? bytes.endIndex
        return target[start..<end]
    }

    /// Returns the index just past the first `://`, or nil.
    private static func indexAfterScheme(_ bytes: String.UTF8View) -> String.Index? {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if bytes[index] == UInt8(ascii: ":") {
                let slash = bytes.index(after: index)
                if slash < bytes.endIndex, bytes[slash] == UInt8(ascii: "/") {
                    let second = bytes.index(after: slash)
                    if second < bytes.endIndex, bytes[second] == UInt8(ascii: "/") {
                        return bytes.index(after: second)
                    }
                }
            }
            index = bytes.index(after: index)
        }
        return nil
    }
}

public struct HTTPRequest: Sendable {
    public var head: HTTPRequestHead
    public var body: [UInt8]
    /// Trailer fields of a chunked body, kept apart from the header fields.
    public var trailers: HTTPHeaders
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// Whether the server closes the connection after sending this response.
    public var closeConnection: Bool

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [], closeConnection: Bool = false) {
        self.status = status
        self.headers = headers
        self.body = body
        self.closeConnection = closeConnection
    }

    /// Standard reason phrases for the status codes this server sends.
    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 410: return "Gone"
        case 413: return "Content Too Large"
        case 415: return "Unsupported Media Type"
        case 417: return "Expectation Failed"
        case 422: return "Unprocessable Content"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Status \(status)"
        }
    }

    /// Serialises the status line, headers and body; `Content-Length` and `Connection` are added here.
    func serialize(date: String, includeBody: Bool, close: Bool) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(160 + self.body.count)
        switch self.status {
        case 200: output.append(contentsOf: "HTTP/1.1 200 OK\r\n".utf8)
        case 202: output.append(contentsOf: "HTTP/1.1 202 Accepted\r\n".utf8)
        default: output.append(contentsOf: "HTTP/1.1 \(self.status) \(Self.reasonPhrase(self.status))\r\n".utf8)
        }
        output.append(contentsOf: "Date: ".utf8)
        output.append(contentsOf: date.utf8)
        output.append(contentsOf: "\r\n".utf8)
        self.headers.serialize(into: &output)
        output.append(contentsOf: "Content-Length: ".utf8)
        Self.appendDecimal(self.body.count, to: &output)
        output.append(contentsOf: "\r\n".utf8)
        if close {
            output.append(contentsOf: "Connection: close\r\n".utf8)
        }
        output.append(contentsOf: "\r\n".utf8)
        if includeBody {
            output.append(contentsOf: self.body)
        }
        return output
    }

    /// Appends a non-negative integer in decimal without building a `String`.
    static func appendDecimal(_ value: Int, to output: inout [UInt8]) {
        precondition(value >= 0, "a length is never negative")
        let start = output.count
        var rest = value
        repeat {
            output.append(UInt8(ascii: "0") + UInt8(rest % 10))
            rest /= 10
        } while rest > 0
        output[start...].reverse()
    }
}
