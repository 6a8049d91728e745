import PortoutJournal

// Fuzz target `journal-record`: the input is read both as one record payload, with `JournalRecord.decode`,
// and as a whole segment file, with `SegmentFile.scan` as start-up recovery reads it, decoding each frame found.
// A decoded record must encode back to the same record, and the scan's frames, damage and torn tail must
// account for the segment's bytes.

/// The encoder keeps the first 1024 bytes of an attempt's error text.
private let maxAttemptErrorBytes = 1024

private func checkPayload(_ payload: UnsafeRawBufferPointer) {
    let record = JournalRecord.decode(payload)
    let withoutBody = JournalRecord.decode(payload, includeBody: false)
    guard let record else {
        fuzzCheck(withoutBody == nil, "a payload decodes only without its body")
        return
    }
    if case .event(var event) = record {
        guard let body = JournalRecord.eventBody(payload) else {
            fatalError("eventBody rejects an event record that decodes")
        }
        fuzzCheck(body.body == event.body, "eventBody returns another body than decode")
        fuzzCheck(body.isBare == event.isBare, "eventBody returns another isBare than decode")
        event.body = []
        fuzzCheck(withoutBody == .event(event), "decoding without the body changes other fields")
    } else {
        fuzzCheck(withoutBody == record, "includeBody changes a record that has no body")
    }
    guard let reread = JournalRecord.decode(record.encoded()) else {
        fatalError("the decoder rejects its own record encoded again: \(record)")
    }
    if case .attempt(let attempt) = record, attempt.error.utf8.count > maxAttemptErrorBytes {
        return
    }
    fuzzCheck(reread == record, "\(record) encodes and decodes as \(reread)")
}

private func checkSegment(_ bytes: [UInt8]) {
    var frameEnd = 0
    var visits = 0
    let result = SegmentFile.scan(bytes) { payload, offset in
        fuzzCheck(offset >= frameEnd, "frame at \(offset) overlaps the frame that ends at \(frameEnd)")
        let start = offset + 8
        frameEnd = start + payload.count
        fuzzCheck(frameEnd <= bytes.count, "frame at \(offset) runs past the end of the segment")
        fuzzCheck(payload.elementsEqual(bytes[start..<frameEnd]), "frame at \(offset) returns bytes from elsewhere")
        visits += 1
        checkPayload(payload)
    }
    fuzzCheck(result.records == visits, "scan counts \(result.records) records but visited \(visits)")
    fuzzCheck(result.validBytes <= bytes.count, "scan reports \(result.validBytes) valid bytes of \(bytes.count)")
    var damageEnd = 0
    for damage in result.damage {
        fuzzCheck(damage.start >= damageEnd && damage.start < damage.end, "damage \(damage) overlaps or is empty")
        fuzzCheck(damage.end <= bytes.count, "damage \(damage) runs past the end of the segment")
        damageEnd = damage.end
    }
    fuzzCheck(
        result.unusedBytes == 0 || result.validBytes + result.unusedBytes == bytes.count,
        "scan reports \(result.unusedBytes) unused bytes after \(result.validBytes) valid ones of \(bytes.count)")
    if result.problem == nil {
        // A clean scan accounts for every byte: records, then only zeros preallocated for appends.
        fuzzCheck(
            result.validBytes + result.unusedBytes == bytes.count,
            "scan found no problem but accounts for \(result.validBytes + result.unusedBytes) bytes")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJournalRecord(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInputBytes(data, size)
    bytes.withUnsafeBytes { checkPayload($0) }
    checkSegment(bytes)
    return 0
}
