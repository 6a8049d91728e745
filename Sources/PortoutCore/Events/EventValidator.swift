/// Checks event bodies against the carrier's event envelope and object schemas.
///
/// Every fault is collected, not only the first, so a 422 response names all fields at fault.
public enum EventValidator {
    /// Validates a parsed body, which is either a CloudEvents envelope or a bare `portOut` object.
    public static func validate(_ body: JSONValue) -> Result<ValidatedEvent, ValidationFailure> {
        guard let object = body.objectValue else {
            return .failure(ValidationFailure([ValidationIssue(field: "$", message: "must be a JSON object")]))
        }
        var checker = FieldChecker()
        if object["object"]?.stringValue == "portOut" {
            let portOut = checker.portOut(object, path: "")
            guard checker.issues.isEmpty, let portOut else { return .failure(ValidationFailure(checker.issues)) }
            let event = ValidatedEvent(
                kind: .statusChange, id: nil, type: portOut.status.eventType, project: nil, portOut: portOut)
            return .success(event)
        }
        let event = checker.envelope(object)
        guard checker.issues.isEmpty, let event else { return .failure(ValidationFailure(checker.issues)) }
        return .success(event)
    }
}

/// The fields at fault in a rejected event.
public struct ValidationFailure: Error, Sendable, Equatable {
    public let issues: [ValidationIssue]

    public init(_ issues: [ValidationIssue]) {
        self.issues = issues
    }
}

private struct FieldChecker {
    var issues: [ValidationIssue] = []
    /// The member index at which the next lookup starts. The checks below ask for fields in the order the
    /// reference lists them, which is the order the carrier sends, so each lookup usually finds its field at once.
    var position = 0

    mutating func fail(_ path: String, _ message: String) {
        self.issues.append(ValidationIssue(field: path, message: message))
    }

    static func join(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    mutating func envelope(_ object: JSONObject) -> ValidatedEvent? {
        _ = self.constant(object, "", "object", "event")
        let id = self.identifier(object, "", "id")
        let type = self.identifier(object, "", "type")
        _ = self.constant(object, "", "datacontenttype", "application/json")
        let project = self.identifier(object, "", "project")
        _ = self.identifier(object, "", "source")
        _ = self.constant(object, "", "specversion", "1.0")
        _ = self.time(object, "", "time", nullable: false)
        _ = self.identifier(object, "", "version")
        if let type, !type.hasPrefix(CarrierEventType.prefix) {
            self.fail("type", "must start with \"\(CarrierEventType.prefix)\"")
        }
        self.checkPreviousData(object, type: type)

        guard let dataValue = object["data"] else {
            self.fail("data", "is required")
            return nil
        }
        guard let data = dataValue.objectValue else {
            self.fail("data", "must be an object, not \(dataValue.typeName)")
            return nil
        }
        guard let type else { return nil }

        let kind: ValidatedEvent.Kind
        var portOut: PortOut?
        if type == CarrierEventType.credentialsIssued {
            kind = .credentialsIssued
            self.credentials(data)
        } else if CarrierEventType.isPortOutType(type) {
            kind = type == CarrierEventType.portOutUpdated ? .portOutUpdated : .statusChange
            portOut = self.portOut(data, path: "data")
            if kind == .statusChange, let portOut, let expected = PortOutStatus.byEventType[type],
                portOut.status != expected
            {
                self.fail("data.status", "is \"\(portOut.status.rawValue)\" but a \(type) event must carry \"\(expected.rawValue)\"")
            }
        } else {
            kind = .other
        }
        guard let id, let project else { return nil }
        return ValidatedEvent(kind: kind, id: id, type: type, project: project, portOut: portOut)
    }

    mutating func checkPreviousData(_ object: JSONObject, type: String?) {
        let isUpdate = type?.hasSuffix(".updated") ?? false
        guard let previous = object["previousData"] else {
            if isUpdate {
                self.fail("previousData", "is required on .updated events")
            }
            return
        }
        if previous.objectValue == nil {
            self.fail("previousData", "must be an object, not \(previous.typeName)")
        } else if !isUpdate && type != nil {
            self.fail("previousData", "is only allowed on .updated events")
        }
    }

    static let statusNames = Set(PortOutStatus.allCases.map(\.rawValue))

    mutating func portOut(_ object: JSONObject, path: String) -> PortOut? {
        _ = self.constant(object, path, "object", "portOut")
        let id = self.identifier(object, path, "id")
        let behavior = self.oneOf(object, path, "behavior", PortOut.behaviors)
        let completedAt = self.time(object, path, "completedAt", nullable: true)
        let createdAt = self.time(object, path, "createdAt", nullable: false)
        let expiredAt = self.time(object, path, "expiredAt", nullable: true)
        let failureReason = self.nullableOneOf(object, path, "failureReason", PortOut.failureReasons)
        let statusText = self.oneOf(object, path, "status", Self.statusNames)
        let subscription = self.identifier(object, path, "subscription")
        let user = self.identifier(object, path, "user")
        guard let id, let behavior, let completedAt, let createdAt, let expiredAt, let failureReason,
            let statusText, let status = PortOutStatus(rawValue: statusText), let subscription, let user
        else { return nil }
        return PortOut(
            id: id, behavior: behavior, completedAt: completedAt.value, createdAt: createdAt.value ?? "",
            expiredAt: expiredAt.value, failureReason: failureReason.value, status: status,
            subscription: subscription, user: user)
    }

    mutating func credentials(_ object: JSONObject) {
        _ = self.constant(object, "data", "object", "portOutCredentials")
        _ = self.nonEmptyString(object, "data", "accountNumber")
        _ = self.identifier(object, "data", "subscription")
        _ = self.time(object, "data", "expiresAt", nullable: false)
        // Events never carry the PIN; one that does is refused rather than relayed to every destination.
        if let pin = object["accountPin"] {
            if !pin.isNull {
                self.fail("data.accountPin", "must be null in events")
            }
        } else {
            self.fail("data.accountPin", "is required")
        }
    }

    mutating func value(_ object: JSONObject, _ path: String, _ key: String) -> JSONValue? {
        guard let value = object.value(forKey: key, searchingFrom: &self.position) else {
            self.fail(Self.join(path, key), "is required")
            return nil
        }
        return value
    }

    mutating func nonEmptyString(_ object: JSONObject, _ path: String, _ key: String) -> String? {
        guard let value = self.value(object, path, key) else { return nil }
        guard let string = value.stringValue else {
            self.fail(Self.join(path, key), "must be a string, not \(value.typeName)")
            return nil
        }
        guard !string.isEmpty else {
            self.fail(Self.join(path, key), "must not be empty")
            return nil
        }
        return string
    }

    /// Maximum length of an id, type or name, in UTF-8 bytes. It is far above what the carrier sends and short
    /// enough to journal, log and send as a header value.
    static let maxIdentifierBytes = 255

    /// Reads a non-empty string of at most `maxIdentifierBytes` with no control characters and no space at either
    /// end, because ids travel on into log lines and into the `webhook-id` header of every delivery. A receiver
    /// trims a header value's outer spaces (RFC 9110, section 5.5), and would then check a signature over another id.
    mutating func identifier(_ object: JSONObject, _ path: String, _ key: String) -> String? {
        guard let string = self.nonEmptyString(object, path, key) else { return nil }
        if string.utf8.count > Self.maxIdentifierBytes {
            self.fail(Self.join(path, key), "must be at most \(Self.maxIdentifierBytes) bytes long")
            return nil
        }
        if Self.containsControlCharacter(string) {
            self.fail(Self.join(path, key), "must not contain control characters")
            return nil
        }
        if string.utf8.first == UInt8(ascii: " ") || string.utf8.last == UInt8(ascii: " ") {
            self.fail(Self.join(path, key), "must not begin or end with a space")
            return nil
        }
        return string
    }

    static func containsControlCharacter(_ string: String) -> Bool {
        let isControl = { (byte: UInt8) in byte < 0x20 || byte == 0x7F }
        return string.utf8.withContiguousStorageIfAvailable { $0.contains(where: isControl) }
            ?? string.utf8.contains(where: isControl)
    }

    mutating func constant(_ object: JSONObject, _ path: String, _ key: String, _ expected: String) -> String? {
        guard let string = self.nonEmptyString(object, path, key) else { return nil }
        guard string == expected else {
            self.fail(Self.join(path, key), "must be \"\(expected)\"")
            return nil
        }
        return string
    }

    mutating func oneOf(_ object: JSONObject, _ path: String, _ key: String, _ allowed: Set<String>) -> String? {
        guard let string = self.nonEmptyString(object, path, key) else { return nil }
        guard allowed.contains(string) else {
            self.fail(Self.join(path, key), "must be one of \(allowed.sorted().joined(separator: ", "))")
            return nil
        }
        return string
    }

    /// Returns the value wrapped once, so that a valid null (`.some(nil)`) differs from a fault (`nil`).
    mutating func nullableOneOf(
        _ object: JSONObject, _ path: String, _ key: String, _ allowed: Set<String>
    ) -> Nullable? {
        guard let value = self.value(object, path, key) else { return nil }
        if value.isNull { return Nullable(value: nil) }
        guard let string = value.stringValue, allowed.contains(string) else {
            self.fail(Self.join(path, key), "must be null or one of \(allowed.sorted().joined(separator: ", "))")
            return nil
        }
        return Nullable(value: string)
    }

    mutating func time(_ object: JSONObject, _ path: String, _ key: String, nullable: Bool) -> Nullable? {
        guard let value = self.value(object, path, key) else { return nil }
        if value.isNull {
            if nullable { return Nullable(value: nil) }
            self.fail(Self.join(path, key), "must be an RFC 3339 time, not null")
            return nil
        }
        guard let string = value.stringValue, RFC3339.isValid(string) else {
            self.fail(Self.join(path, key), nullable ? "must be null or an RFC 3339 time" : "must be an RFC 3339 time")
            return nil
        }
        return Nullable(value: string)
    }

    struct Nullable {
        let value: String?
    }
}
