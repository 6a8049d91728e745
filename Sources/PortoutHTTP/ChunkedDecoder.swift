import PortoutCore

/// Decodes a `Transfer-Encoding: chunked` body (RFC 9112 section 7.1) from a receive buffer.
///
/// Chunk extensions are checked for syntax and dropped. White space around a chunk size or extension, which
/// RFC 9112 only tolerates for compatibility, is rejected, as is anything but CRLF after chunk data.
struct ChunkedDecoder: Sendable {
    enum Outcome {
        case needMoreData
        case done(HTTPHeaders)
        case failure(HTTPParseError)
    }

    private enum State: Sendable {
        case size
        case data(remaining: Int)
        case dataEnd
        case trailers
    }

    /// Longest chunk-size line accepted, extensions included.
    static let maxSizeLineBytes = Limits.maxChunkSizeLineBytes
    /// Maximum chunk-extension bytes accepted across one body. The body limit counts only chunk data, so without
    /// this a client could send unbounded extension bytes in one request. RFC 9112 section 7.1.1 recommends
    /// such a limit.
    static let maxExtensionBytes = 4096

    private var state = State.size
    private var trailers = HTTPHeaders()
    private var trailerBytes = 0
    private var extensionBytes = 0
    /// Bytes of the current line already checked, so that a line arriving a byte at a time is not scanned from
    /// its start on every read.
    private var lineScanned = 0

    mutating func decode(_ buffer: inout ByteBuffer, into body: inout [UInt8], limits: HTTPParserLimits) -> Outcome {
        while true {
            switch self.state {
            case .size:
                switch Self.takeLine(&buffer, maxBytes: Self.maxSizeLineBytes, scanned: &self.lineScanned) {
                case .needMoreData:
                    return .needMoreData
                case .failure(let error):
                    if error.status == 431 {
                        return .failure(.badRequest("chunk size line exceeds \(Self.maxSizeLineBytes) bytes"))
                    }
                    return .failure(error)
                case .line(let line):
                    guard let size = Self.parseSizeLine(line) else {
                        return .failure(.badRequest("invalid chunk size line"))
                    }
                    if let extensionStart = line.firstIndex(of: UInt8(ascii: ";")) {
                        self.extensionBytes += line.count - extensionStart
                        if self.extensionBytes > Self.maxExtensionBytes {
                            let reason = "chunk extensions exceed \(Self.maxExtensionBytes) bytes in total"
                            return .failure(.badRequest(reason))
                        }
                    }
                    if size > limits.maxBodyBytes - body.count {
                        return .failure(HTTPParseError(status: 413, reason: "chunked body exceeds the body limit"))
                    }
                    self.state = size == 0 ? .trailers : .data(remaining: size)
                }
            case .data(let remaining):
                let count = min(remaining, buffer.readableCount)
                guard count > 0 else { return .needMoreData }
                buffer.withReadableBytes { body.append(contentsOf: $0[0..<count]) }
                buffer.skip(count)
                self.state = count == remaining ? .dataEnd : .data(remaining: remaining - count)
            case .dataEnd:
                guard buffer.readableCount >= 2 else {
                    if buffer.readableCount == 1 && buffer[0] != 0x0D {
                        return .failure(.badRequest("chunk data not followed by CRLF"))
                    }
                    return .needMoreData
                }
                guard buffer[0] == 0x0D, buffer[1] == 0x0A else {
                    return .failure(.badRequest("chunk data not followed by CRLF"))
                }
                buffer.skip(2)
                self.state = .size
            case .trailers:
                let remainingAllowance = limits.maxHeaderBytes - self.trailerBytes
                switch Self.takeLine(&buffer, maxBytes: remainingAllowance, scanned: &self.lineScanned) {
                case .needMoreData:
                    return .needMoreData
                case .failure(let error):
                    if error.status == 431 {
                        return .failure(HTTPParseError(status: 431, reason: "chunked trailers exceed the header limit"))
                    }
                    return .failure(error)
                case .line(let line):
                    // The limit covers the whole trailer section, each line's CRLF and the final one included.
                    self.trailerBytes += line.count + 2
                    if self.trailerBytes > limits.maxHeaderBytes {
                        return .failure(HTTPParseError(status: 431, reason: "chunked trailers exceed the header limit"))
                    }
                    if line.isEmpty {
                        return .done(self.trailers)
                    }
                    if line.first == 0x20 || line.first == 0x09 {
                        return .failure(.badRequest("trailer line starts with white space"))
                    }
                    let parsed = line.withUnsafeBufferPointer { bytes -> HTTPParseError? in
                        switch HeadScanner.parseField(bytes) {
                        case .success(let field):
                            self.trailers.add(name: field.name, value: field.value)
                            return nil
                        case .failure(let error):
                            return error
                        }
                    }
                    if let parsed {
                        return .failure(parsed)
                    }
                }
            }
        }
    }

    private enum LineOutcome {
        case needMoreData
        case line([UInt8])
        case failure(HTTPParseError)
    }

    /// Removes one CRLF-terminated line from the buffer; a CR or LF anywhere else in it is an error.
    /// `scanned` is how many bytes of the line earlier calls checked; it is reset when a line is taken.
    private static func takeLine(_ buffer: inout ByteBuffer, maxBytes: Int, scanned: inout Int) -> LineOutcome {
        let count = buffer.readableCount
        var index = scanned
        defer { scanned = index }
        while index < count {
            let byte = buffer[index]
            if byte == 0x0A {
                return .failure(.badRequest("bare LF where CRLF is required"))
            }
            if byte == 0x0D {
                guard index + 1 < count else { return .needMoreData }
                guard buffer[index + 1] == 0x0A else {
                    return .failure(.badRequest("CR not followed by LF"))
                }
                let line = buffer.read(index)
                buffer.skip(2)
                index = 0
                return .line(line)
            }
            index += 1
            if index > maxBytes {
                return .failure(HTTPParseError(status: 431, reason: "line too long"))
            }
        }
        return .needMoreData
    }

    /// Parses `1*HEXDIG *( ";" token [ "=" ( token / quoted-string ) ] )` and returns the size.
    static func parseSizeLine(_ line: [UInt8]) -> Int? {
        var index = 0
        var size = 0
        while index < line.count, let digit = ASCII.hexDigitValue(line[index]) {
            guard index < 15 else { return nil }
            size = size << 4 | digit
            index += 1
        }
        guard index > 0 else { return nil }
        while index < line.count {
            guard line[index] == UInt8(ascii: ";") else { return nil }
            index += 1
            let nameStart = index
            while index < line.count, HeaderSyntaxBytes.isToken(line[index]) { index += 1 }
            guard index > nameStart else { return nil }
            guard index < line.count, line[index] == UInt8(ascii: "=") else { continue }
            index += 1
            guard let valueEnd = Self.scanExtensionValue(line, from: index) else { return nil }
            index = valueEnd
        }
        return size
    }

    /// Returns the index after a token or quoted-string starting at `start`, or nil if there is neither.
    private static func scanExtensionValue(_ line: [UInt8], from start: Int) -> Int? {
        var index = start
        guard index < line.count else { return nil }
        if line[index] != UInt8(ascii: "\"") {
            while index < line.count, HeaderSyntaxBytes.isToken(line[index]) { index += 1 }
            return index > start ? index : nil
        }
        index += 1
        while index < line.count {
            switch line[index] {
            case UInt8(ascii: "\""):
                return index + 1
            case UInt8(ascii: "\\"):
                guard index + 1 < line.count, HeaderSyntaxBytes.isFieldValue(line[index + 1]) else { return nil }
                index += 2
            case let byte where HeaderSyntaxBytes.isFieldValue(byte):
                index += 1
            default:
                return nil
            }
        }
        return nil
    }
}
