import PortoutCore

// Fuzz target `event-validation`: the input is a webhook body, parsed with `JSONParser.parse` and checked with
// `EventValidator.validate` as intake does. A parsed value must survive `JSONWriter` and a second parse
// unchanged, and an accepted event must carry what intake and the journal rely on. The read API later slices
// `data` out of the stored body with `JSONSpan`, which must find the value the parser found.

/// The identifier bound of `EventValidator`: ids and types travel on into log lines and header values.
private let maxIdentifierBytes = 255

private func checkIdentifier(_ value: String, _ field: String) {
    fuzzCheck(!value.isEmpty, "an accepted event has an empty \(field)")
    fuzzCheck(value.utf8.count <= maxIdentifierBytes, "an accepted event's \(field) is \(value.utf8.count) bytes long")
    fuzzCheck(
        !value.utf8.contains { $0 < 0x20 || $0 == 0x7F },
        "an accepted event's \(field) contains a control character"
    )
}

private func checkAccepted(_ event: ValidatedEvent) {
    checkIdentifier(event.type, "type")
    if let id = event.id {
        checkIdentifier(id, "id")
    }
    if let project = event.project {
        checkIdentifier(project, "project")
    }
    fuzzCheck((event.id == nil) == (event.project == nil), "an accepted event has only one of id and project")
    guard let portOut = event.portOut else {
        fuzzCheck(event.kind == .credentialsIssued || event.kind == .other, "a \(event.kind) event has no port out")
        return
    }
    checkIdentifier(portOut.id, "port out id")
    checkIdentifier(portOut.subscription, "subscription")
    // Intake stores createdAt as Unix milliseconds for the read API's order.
    fuzzCheck(RFC3339.parseSeconds(portOut.createdAt) != nil, "createdAt \(portOut.createdAt) is not RFC 3339")
    if event.kind == .statusChange, event.id != nil {
        fuzzCheck(portOut.status.eventType == event.type, "a \(event.type) event carries status \(portOut.status)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEventValidation(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInputBytes(data, size)
    let value: JSONValue
    do {
        value = try JSONParser.parse(bytes)
    } catch {
        fuzzCheck((0...bytes.count).contains(error.offset), "error offset \(error.offset) is outside the input")
        return 0
    }
    let written = JSONWriter.encode(value)
    do {
        let reparsed = try JSONParser.parse(written)
        fuzzCheck(reparsed == value, "\(value) reads back as \(reparsed)")
    } catch {
        fatalError("the parser rejects its own value written as \(String(decoding: written, as: UTF8.self)): \(error)")
    }
    if let object = value.objectValue, let span = JSONSpan.member("data", in: bytes) {
        let sliced = try? JSONParser.parse(Array(bytes[span]))
        fuzzCheck(sliced != nil && sliced == object["data"], "JSONSpan finds data at \(span), not the parsed value")
    }
    if case .success(let event) = EventValidator.validate(value) {
        checkAccepted(event)
    }
    return 0
}
