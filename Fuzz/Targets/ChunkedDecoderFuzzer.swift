@testable import PortoutHTTP

// Fuzz target `chunked-decoder`: the input is a chunked message body, from the first chunk-size line on. It is
// decoded whole and again in two parts split at an offset the input chooses. Both must produce the same body,
// trailers or failure, and leave the same bytes unread after the body.

private let decoderLimits = HTTPParserLimits(maxHeaderBytes: 512, maxBodyBytes: 2048)

private struct DecodeTranscript: Equatable {
    var body: [UInt8] = []
    /// The trailer fields when the body ended, or nil when it did not.
    var trailers: [[String]]?
    var failure: HTTPParseError?
    /// The bytes after the body, once it has ended.
    var unreadBytes: [UInt8] = []
}

private func decode(_ parts: [ArraySlice<UInt8>]) -> DecodeTranscript {
    var decoder = ChunkedDecoder()
    var buffer = ByteBuffer()
    var transcript = DecodeTranscript()
    for (index, part) in parts.enumerated() {
        buffer.append(part)
        switch decoder.decode(&buffer, into: &transcript.body, limits: decoderLimits) {
        case .needMoreData:
            continue
        case .done(let trailers):
            transcript.trailers = trailers.map { [$0.name, $0.value] }
            // The bytes after the body belong to the next request; both deliveries must leave all of them unread.
            for later in parts[(index + 1)...] {
                buffer.append(later)
            }
            transcript.unreadBytes = buffer.withReadableBytes { Array($0) }
        case .failure(let error):
            fuzzCheck([400, 413, 431].contains(error.status), "unexpected status in \(error)")
            transcript.failure = error
        }
        break
    }
    fuzzCheck(
        transcript.body.count <= decoderLimits.maxBodyBytes,
        "a body of \(transcript.body.count) bytes passed the limit"
    )
    return transcript
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzChunkedDecoder(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInputBytes(data, size)
    let whole = decode([bytes[...]])
    let offset = fuzzSplitOffset(bytes)
    let split = decode([bytes[..<offset], bytes[offset...]])
    fuzzCheck(whole == split, "split at byte \(offset), the body decodes as\n\(split)\nbut whole as\n\(whole)")
    return 0
}
