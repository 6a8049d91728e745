import PortoutHTTP

// Fuzz target `http-request`: `HTTPRequestParser.parse` over the input as one receive buffer, then over the
// same input delivered in two parts split at an offset the input chooses. Both deliveries must produce the
// same heads, requests and failure, and every request must keep to the parser's limits and its own framing.

/// Small limits, so that inputs of a few kilobytes reach the 413 and 431 paths.
private let parserLimits = HTTPParserLimits(maxHeaderBytes: 1024, maxBodyBytes: 2048)

/// The parts of a request head that a client controls, with the path and query read from its target.
private struct HeadSummary: Equatable {
    var method: String
    var target: String
    var path: Substring
    var query: Substring?
    var version: HTTPVersion
    var headers: [[String]]
    var framing: BodyFraming
    var keepAlive: Bool
    var expectsContinue: Bool
    var requestsUpgrade: Bool
    var hasUnsupportedExpectation: Bool

    init(_ head: HTTPRequestHead) {
        self.method = head.method
        self.target = head.target
        self.path = head.path
        self.query = head.query
        self.version = head.version
        self.headers = head.headers.map { [$0.name, $0.value] }
        self.framing = head.framing
        self.keepAlive = head.keepAlive
        self.expectsContinue = head.expectsContinue
        self.requestsUpgrade = head.requestsUpgrade
        self.hasUnsupportedExpectation = head.hasUnsupportedExpectation
    }
}

private enum ParsedEvent: Equatable {
    case head(HeadSummary)
    case request(HeadSummary, body: [UInt8], trailers: [[String]])
    case failure(HTTPParseError)
}

/// Everything one delivery of the input produced, apart from the `.needMoreData` pauses.
private struct ParseTranscript: Equatable {
    var events: [ParsedEvent] = []
    var isMidRequest = false
    var unreadBytes: [UInt8] = []
}

/// Parses `parts` as consecutive reads from one connection, stopping at the first failure as a connection does.
private func parse(_ parts: [ArraySlice<UInt8>], inputCount: Int) -> ParseTranscript {
    var parser = HTTPRequestParser(limits: parserLimits)
    var buffer = ByteBuffer()
    var transcript = ParseTranscript()
    reading: for part in parts {
        buffer.append(part)
        while true {
            // Each request takes at least one byte and yields at most a head and a request.
            fuzzCheck(
                transcript.events.count <= 2 * inputCount + 2,
                "the parser returns events without consuming input"
            )
            switch parser.parse(&buffer) {
            case .needMoreData:
                continue reading
            case .head(let head):
                transcript.events.append(.head(HeadSummary(head)))
            case .request(let request):
                checkFraming(request)
                transcript.events.append(
                    .request(
                        HeadSummary(request.head),
                        body: request.body,
                        trailers: request.trailers.map { [$0.name, $0.value] }
                    )
                )
            case .failure(let error):
                checkFailure(error, parser: &parser, buffer: &buffer)
                transcript.events.append(.failure(error))
                break reading
            }
        }
    }
    // After a failure the split delivery never appends its second part, so only the state before one compares.
    if case .failure = transcript.events.last {
        return transcript
    }
    transcript.isMidRequest = parser.isMidRequest
    transcript.unreadBytes = buffer.withReadableBytes { Array($0) }
    return transcript
}

private func checkFraming(_ request: HTTPRequest) {
    fuzzCheck(request.body.count <= parserLimits.maxBodyBytes, "a body of \(request.body.count) bytes passed the limit")
    switch request.head.framing {
    case .none:
        fuzzCheck(request.body.isEmpty, "a request without framing has a body")
    case .contentLength(let length):
        fuzzCheck(request.body.count == length, "Content-Length \(length) but a body of \(request.body.count) bytes")
    case .chunked:
        break
    }
    if request.head.framing != .chunked {
        fuzzCheck(request.trailers.count == 0, "a request that is not chunked has trailers")
    }
}

private func checkFailure(_ error: HTTPParseError, parser: inout HTTPRequestParser, buffer: inout ByteBuffer) {
    fuzzCheck([400, 413, 431, 505].contains(error.status), "unexpected status in \(error)")
    guard case .failure(let repeated) = parser.parse(&buffer) else {
        fatalError("the parser went on after \(error)")
    }
    fuzzCheck(repeated == error, "the parser reported \(error), then \(repeated)")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPRequest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInputBytes(data, size)
    let whole = parse([bytes[...]], inputCount: bytes.count)
    let offset = fuzzSplitOffset(bytes)
    let split = parse([bytes[..<offset], bytes[offset...]], inputCount: bytes.count)
    fuzzCheck(whole == split, "split at byte \(offset), the input parses as\n\(split)\nbut whole as\n\(whole)")
    return 0
}
