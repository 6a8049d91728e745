import PortoutCore

/// Reads a request line and header fields one CRLF-terminated line at a time.
///
/// Each line is checked as soon as its CRLF arrives, and line-ending faults as soon as the offending byte does,
/// so a malformed head is rejected without waiting for the rest of it.
struct HeadScanner: Sendable {
    enum Outcome {
        case needMoreData
        case head(HTTPRequestHead)
        case failure(HTTPParseError)
    }

    /// Offset, from the buffer's read index, of the next byte to examine.
    private var position = 0
    /// Offset of the first byte of the line being read.
    private var lineStart = 0
    private var requestLine: (method: String, target: String, version: HTTPVersion)?
    private var headers = HTTPHeaders()

    var hasStarted: Bool {
        self.position > 0
    }

    mutating func scan(_ buffer: inout ByteBuffer, limits: HTTPParserLimits) -> Outcome {
        let outcome = buffer.withReadableBytes { bytes -> Outcome in
            self.scanLines(bytes, limits: limits)
        }
        if case .head = outcome {
            buffer.skip(self.position)
        }
        return outcome
    }

    private mutating func scanLines(_ bytes: UnsafeBufferPointer<UInt8>, limits: HTTPParserLimits) -> Outcome {
        while self.position < bytes.count {
            if self.position >= limits.maxHeaderBytes {
                return .failure(HTTPParseError(status: 431, reason: "request head exceeds \(limits.maxHeaderBytes) bytes"))
            }
            if self.position == self.lineStart, self.requestLine != nil,
                bytes[self.position] == 0x20 || bytes[self.position] == 0x09
            {
                return .failure(.badRequest("header line starts with white space (obsolete line folding)"))
            }
            // Bytes other than CR and LF need no decision here, so they are skipped in a loop of their own
            // rather than each going through the checks above.
            let scanEnd = min(bytes.count, limits.maxHeaderBytes)
            var next = self.position
            while next < scanEnd, bytes[next] != 0x0D, bytes[next] != 0x0A {
                next += 1
            }
            self.position = next
            guard next < scanEnd else { continue }
            let byte = bytes[next]
            if byte == 0x0D {
                guard self.position + 1 < bytes.count else { return .needMoreData }
                guard bytes[self.position + 1] == 0x0A else {
                    return .failure(.badRequest("CR not followed by LF"))
                }
                // The limit covers the whole head, the CRLF that ends it included.
                if self.position + 2 > limits.maxHeaderBytes {
                    return .failure(HTTPParseError(status: 431, reason: "request head exceeds \(limits.maxHeaderBytes) bytes"))
                }
                let line = UnsafeBufferPointer(rebasing: bytes[self.lineStart..<self.position])
                self.position += 2
                self.lineStart = self.position
                if let outcome = self.process(line: line) {
                    return outcome
                }
                continue
            }
            return .failure(.badRequest("bare LF where CRLF is required"))
        }
        if self.position >= limits.maxHeaderBytes {
            return .failure(HTTPParseError(status: 431, reason: "request head exceeds \(limits.maxHeaderBytes) bytes"))
        }
        return .needMoreData
    }

    /// Handles one complete line; returns an outcome when the head ends or is invalid.
    private mutating func process(line: UnsafeBufferPointer<UInt8>) -> Outcome? {
        guard self.requestLine != nil else {
            // RFC 9112 section 2.2: a server should ignore empty lines received before the request line.
            if line.isEmpty { return nil }
            switch Self.parseRequestLine(line) {
            case .success(let parsed):
                self.requestLine = parsed
                return nil
            case .failure(let error):
                return .failure(error)
            }
        }
        if line.isEmpty {
            return self.finish()
        }
        if self.headers.count == 0 {
            self.headers.reserveCapacity(byteCount: 512, fields: 12)
        }
        switch Self.parseField(line) {
        case .success(let field):
            self.headers.add(name: field.name, value: field.value)
            return nil
        case .failure(let error):
            return .failure(error)
        }
    }

    static func parseRequestLine(
        _ line: UnsafeBufferPointer<UInt8>
    ) -> Result<(method: String, target: String, version: HTTPVersion), HTTPParseError> {
        guard let firstSpace = line.firstIndex(of: 0x20),
            let secondSpace = line[(firstSpace + 1)...].firstIndex(of: 0x20),
            !line[(secondSpace + 1)...].contains(0x20)
        else {
            return .failure(.badRequest("request line must be method, target and version separated by single spaces"))
        }
        let methodBytes = UnsafeBufferPointer(rebasing: line[..<firstSpace])
        guard let method = Self.method(methodBytes) else {
            if methodBytes.elementsEqual("CONNECT".utf8) {
                return .failure(.badRequest("CONNECT is not supported"))
            }
            return .failure(.badRequest("unknown method"))
        }
        let targetBytes = line[(firstSpace + 1)..<secondSpace]
        guard !targetBytes.isEmpty, targetBytes.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E }) else {
            return .failure(.badRequest("request target contains characters outside visible ASCII"))
        }
        let target = String(decoding: UnsafeBufferPointer(rebasing: targetBytes), as: UTF8.self)
        let version = line[(secondSpace + 1)...]
        guard version.count == 8, version.starts(with: "HTTP/".utf8), version[version.startIndex + 6] == UInt8(ascii: "."),
            let major = Self.digit(version[version.startIndex + 5]), let minor = Self.digit(version[version.startIndex + 7])
        else {
            return .failure(.badRequest("invalid HTTP version"))
        }
        guard major == 1, minor <= 1 else {
            return .failure(HTTPParseError(status: 505, reason: "HTTP/\(major).\(minor) is not supported"))
        }
        return .success((method, target, HTTPVersion(major: major, minor: minor)))
    }

    /// Returns the method as a string if it is one this server parses. POST and GET, nearly every request, are
    /// matched on their bytes before the set lookup.
    private static func method(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
        if bytes.elementsEqual("POST".utf8) { return "POST" }
        if bytes.elementsEqual("GET".utf8) { return "GET" }
        guard !bytes.isEmpty, bytes.allSatisfy(HeaderSyntaxBytes.isToken) else { return nil }
        let method = String(decoding: bytes, as: UTF8.self)
        return knownMethods.contains(method) ? method : nil
    }

    static func parseField(
        _ line: UnsafeBufferPointer<UInt8>
    ) -> Result<(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>), HTTPParseError> {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
            return .failure(.badRequest("header line has no colon"))
        }
        let name = UnsafeBufferPointer(rebasing: line[line.startIndex..<colon])
        guard !name.isEmpty, name.allSatisfy(HeaderSyntaxBytes.isToken) else {
            return .failure(.badRequest("invalid header name"))
        }
        var start = colon + 1
        var end = line.endIndex
        while start < end, line[start] == 0x20 || line[start] == 0x09 { start += 1 }
        while end > start, line[end - 1] == 0x20 || line[end - 1] == 0x09 { end -= 1 }
        let value = UnsafeBufferPointer(rebasing: line[start..<end])
        guard value.allSatisfy(HeaderSyntaxBytes.isFieldValue) else {
            return .failure(.badRequest("header value contains a control character"))
        }
        if Self.contentLengthName.withUnsafeBufferPointer({ ASCII.equalsIgnoringCase(name, $0) }), !Self.isDigits(value) {
            return .failure(.badRequest("Content-Length is not a decimal number"))
        }
        return .success((name, value))
    }

    private static let contentLengthName = Array("content-length".utf8)

    private mutating func finish() -> Outcome {
        guard let requestLine = self.requestLine else {
            return .failure(.badRequest("missing request line"))
        }
        switch Self.framing(self.headers, version: requestLine.version) {
        case .failure(let error):
            return .failure(error)
        case .success(let framing):
            let (host, hostCount) = self.headers.lookup("host")
            if hostCount > 1 {
                return .failure(.badRequest("more than one Host header"))
            }
            if let host, !HostFieldSyntax.isValid(host) {
                return .failure(.badRequest("Host header is not a valid host with an optional port"))
            }
            // Most requests carry no Connection field, so its tokens are split only when there is one.
            let connection = self.headers["connection"] == nil ? [] : self.headers.tokens("connection")
            let keepAlive: Bool
            if requestLine.version == .http1_1 {
                keepAlive = !connection.contains("close")
            } else {
                keepAlive = connection.contains("keep-alive") && !connection.contains("close")
            }
            // RFC 9110 section 10.1.1 requires ignoring 100-continue in an HTTP/1.0 request, and this server ignores
            // any other expectation of such a request too.
            let expectations =
                requestLine.version == .http1_1 && self.headers["expect"] != nil ? self.headers.tokens("expect") : []
            let expectsContinue = expectations.contains("100-continue")
            let requestsUpgrade = connection.contains("upgrade") && self.headers["upgrade"] != nil
            let head = HTTPRequestHead(
                method: requestLine.method, target: requestLine.target, version: requestLine.version,
                headers: self.headers, framing: framing, keepAlive: keepAlive, expectsContinue: expectsContinue,
                requestsUpgrade: requestsUpgrade,
                hasUnsupportedExpectation: expectations.contains { $0 != "100-continue" })
            return .head(head)
        }
    }

    static func framing(_ headers: HTTPHeaders, version: HTTPVersion) -> Result<BodyFraming, HTTPParseError> {
        let (lengthText, lengthCount) = headers.lookup("content-length")
        if headers.count(of: "transfer-encoding") > 0 {
            guard lengthCount == 0 else {
                return .failure(.badRequest("both Content-Length and Transfer-Encoding are present"))
            }
            guard version == .http1_1 else {
                return .failure(.badRequest("Transfer-Encoding is not allowed in HTTP/1.0"))
            }
            guard headers.tokens("transfer-encoding") == ["chunked"] else {
                return .failure(.badRequest("unsupported Transfer-Encoding; only a single chunked coding is accepted"))
            }
            return .success(.chunked)
        }
        guard let lengthText else {
            return .success(.none)
        }
        guard lengthCount == 1 else {
            return .failure(.badRequest("more than one Content-Length header"))
        }
        // Up to 18 digits always fits in Int64; a longer value, even with leading zeros, is not worth reading.
        guard lengthText.utf8.count <= 18, let length = Int(lengthText) else {
            return .failure(.badRequest("Content-Length is out of range"))
        }
        return .success(.contentLength(length))
    }

    static func isDigits(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        !bytes.isEmpty && bytes.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    private static func digit(_ byte: UInt8) -> Int? {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") ? Int(byte - UInt8(ascii: "0")) : nil
    }
}

/// Byte classes of RFC 9110 for header names and values.
enum HeaderSyntaxBytes {
    static func isToken(_ byte: UInt8) -> Bool {
        HeaderSyntax.isTokenByte(byte)
    }

    /// Visible ASCII, space, tab and obs-text (0x80 to 0xFF); never CR, LF, NUL or another control byte.
    static func isFieldValue(_ byte: UInt8) -> Bool {
        byte == 0x09 || (byte >= 0x20 && byte != 0x7F)
    }
}
