/// A request that cannot be parsed, with the status code to send before closing the connection.
public struct HTTPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 400, 413, 431 or 505.
    public let status: Int
    public let reason: String
    /// The request's head, when it was parsed before the failure, as for a body over the limit.
    public var head: HTTPRequestHead?

    public init(status: Int, reason: String, head: HTTPRequestHead? = nil) {
        self.status = status
        self.reason = reason
        self.head = head
    }

    /// Compares the status and reason, which are what a caller decides on. The head only locates the failure.
    public static func == (lhs: HTTPParseError, rhs: HTTPParseError) -> Bool {
        lhs.status == rhs.status && lhs.reason == rhs.reason
    }

    static func badRequest(_ reason: String) -> HTTPParseError {
        HTTPParseError(status: 400, reason: reason)
    }

    public var description: String {
        "\(self.status): \(self.reason)"
    }
}

public struct HTTPParserLimits: Sendable, Equatable {
    /// Maximum bytes of request line and header fields together, and separately of a chunked body's trailers.
    public var maxHeaderBytes: Int
    public var maxBodyBytes: Int

    public init(maxHeaderBytes: Int, maxBodyBytes: Int) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
    }
}

public enum HTTPParserEvent: Sendable {
    case needMoreData
    /// The head is complete; the body, if any, follows.
    case head(HTTPRequestHead)
    case request(HTTPRequest)
    case failure(HTTPParseError)
}

/// A strict HTTP/1.1 request parser (RFC 9112) over a connection's receive buffer.
///
/// Framing that two parsers could read differently is rejected: a bare LF or CR, white space before a colon or
/// at the start of a header line (obs-fold), both `Content-Length` and `Transfer-Encoding`, several
/// `Content-Length` fields, any transfer coding but a single `chunked`, and chunk extensions that are not
/// well-formed. CONNECT is rejected because this server never opens tunnels. Feed it with `parse(_:)` until it
/// returns `.needMoreData`; after `.request` it is ready for the next pipelined request.
public struct HTTPRequestParser: Sendable {
    public let limits: HTTPParserLimits
    private var state: State = .head(HeadScanner())
    private var body: [UInt8] = []
    /// Chunked-framing bytes consumed since the last `takeFramingBytes()`: size lines, extensions, CRLFs after
    /// chunk data and trailers. They are not kept as body bytes are.
    private var framingBytes = 0

    private enum State: Sendable {
        case head(HeadScanner)
        case contentLength(HTTPRequestHead, remaining: Int)
        case chunked(HTTPRequestHead, ChunkedDecoder)
        case failed(HTTPParseError)
    }

    public init(limits: HTTPParserLimits) {
        self.limits = limits
    }

    /// Whether some bytes of a request have arrived but the request is not complete.
    public var isMidRequest: Bool {
        switch self.state {
        case .head(let scanner): return scanner.hasStarted
        case .contentLength, .chunked: return true
        case .failed: return false
        }
    }

    /// Whether the head has been parsed and the body is still being read.
    public var isReadingBody: Bool {
        switch self.state {
        case .contentLength, .chunked: return true
        default: return false
        }
    }

    /// Returns the chunked-framing bytes consumed since the last call, so that a caller counting buffered bytes
    /// can stop counting them.
    public mutating func takeFramingBytes() -> Int {
        defer { self.framingBytes = 0 }
        return self.framingBytes
    }

    public mutating func parse(_ buffer: inout ByteBuffer) -> HTTPParserEvent {
        switch self.state {
        case .failed(let error):
            return .failure(error)
        case .head(var scanner):
            let outcome = scanner.scan(&buffer, limits: self.limits)
            switch outcome {
            case .needMoreData:
                self.state = .head(scanner)
                return .needMoreData
            case .failure(let error):
                return self.fail(error)
            case .head(let head):
                self.body = []
                switch head.framing {
                case .none, .contentLength(0):
                    self.state = .contentLength(head, remaining: 0)
                case .contentLength(let length):
                    if length > self.limits.maxBodyBytes {
                        return self.fail(HTTPParseError(
                            status: 413, reason: "Content-Length \(length) exceeds the body limit", head: head))
                    }
                    self.body.reserveCapacity(length)
                    self.state = .contentLength(head, remaining: length)
                case .chunked:
                    self.state = .chunked(head, ChunkedDecoder())
                }
                return .head(head)
            }
        case .contentLength(let head, let remaining):
            let count = min(remaining, buffer.readableCount)
            if count > 0 {
                buffer.withReadableBytes { self.body.append(contentsOf: $0[0..<count]) }
                buffer.skip(count)
            }
            if count < remaining {
                self.state = .contentLength(head, remaining: remaining - count)
                return .needMoreData
            }
            return self.complete(head, trailers: HTTPHeaders())
        case .chunked(let head, var decoder):
            let readableBefore = buffer.readableCount
            let bodyBefore = self.body.count
            let outcome = decoder.decode(&buffer, into: &self.body, limits: self.limits)
            self.framingBytes += (readableBefore - buffer.readableCount) - (self.body.count - bodyBefore)
            switch outcome {
            case .needMoreData:
                self.state = .chunked(head, decoder)
                return .needMoreData
            case .failure(var error):
                error.head = head
                return self.fail(error)
            case .done(let trailers):
                return self.complete(head, trailers: trailers)
            }
        }
    }

    private mutating func complete(_ head: HTTPRequestHead, trailers: HTTPHeaders) -> HTTPParserEvent {
        let request = HTTPRequest(head: head, body: self.body, trailers: trailers)
        self.body = []
        self.state = .head(HeadScanner())
        return .request(request)
    }

    private mutating func fail(_ error: HTTPParseError) -> HTTPParserEvent {
        self.state = .failed(error)
        self.body = []
        return .failure(error)
    }
}

/// Request methods this server parses: those of RFC 9110 and the registered extension methods, less CONNECT.
/// An unknown method is rejected with 400 rather than treated as a token, so an unusual request line cannot be
/// read as a request here and as garbage elsewhere.
let knownMethods: Set<String> = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH",
    "ACL", "BIND", "CHECKOUT", "COPY", "LINK", "LOCK", "M-SEARCH", "MERGE", "MKACTIVITY", "MKCALENDAR",
    "MKCOL", "MOVE", "NOTIFY", "PROPFIND", "PROPPATCH", "PURGE", "QUERY", "REBIND", "REPORT", "SEARCH",
    "SOURCE", "SUBSCRIBE", "UNBIND", "UNLINK", "UNLOCK", "UNSUBSCRIBE",
]
