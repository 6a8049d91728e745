import PortoutCore
import PortoutJournal

/// The selection of deliveries for a replay, a redelivery or a dead-letter listing. Every set field must match.
struct DeliveryFilter: Sendable, Equatable {
    var tenant: String?
    var destination: String?
    var portOutID: String?
    var eventID: String?
    var statuses: Set<PortOutStatus>?
    var type: String?
    /// Acceptance time, from inclusive and to exclusive, in Unix milliseconds.
    var acceptedFromMs: Int64?
    var acceptedToMs: Int64?
    /// Whether only deliveries whose last outcome was a dead letter are taken.
    var deadLetteredOnly = false

    /// The names a filter is written with, in a JSON body, a query string or command-line flags.
    static let fieldNames = [
        "tenant", "destination", "portOut", "event", "status", "type", "from", "to", "deadLetteredOnly",
    ]

    var isEmpty: Bool {
        self == DeliveryFilter()
    }

    func matches(_ event: EventSummary, destination: String) -> Bool {
        if let tenant = self.tenant, event.tenant != tenant { return false }
        if let wanted = self.destination, destination != wanted { return false }
        if let portOutID = self.portOutID, event.portOutID != portOutID { return false }
        if let eventID = self.eventID, event.eventID != eventID { return false }
        if let statuses = self.statuses {
            guard let status = event.status, statuses.contains(status) else { return false }
        }
        if let type = self.type, event.type != type { return false }
        if let from = self.acceptedFromMs, event.acceptedAtMs < from { return false }
        if let to = self.acceptedToMs, event.acceptedAtMs >= to { return false }
        return true
    }

    /// Returns the problem with a tenant or destination that none of `configured` has, or nil if there is none.
    /// Nothing could be sent to one, so naming it is a mistake, such as a typo.
    func unconfiguredIssue(_ configured: [(tenant: String, destination: String)]) -> ValidationIssue? {
        if let tenant = self.tenant, !configured.contains(where: { $0.tenant == tenant }) {
            return ValidationIssue(field: "tenant", message: "\(tenant) has no configured destination")
        }
        if let destination = self.destination,
            !configured.contains(where: { $0.destination == destination && (self.tenant ?? $0.tenant) == $0.tenant })
        {
            return ValidationIssue(field: "destination", message: "\(destination) is not configured")
        }
        return nil
    }

    /// Parses the filter fields that `value(name)` returns, as strings (a query or flags) or as JSON values (a
    /// body). Every invalid field is reported.
    static func parse(_ value: (String) -> JSONValue?) -> Result<DeliveryFilter, ValidationFailure> {
        var filter = DeliveryFilter()
        var issues: [ValidationIssue] = []
        func text(_ name: String) -> String? {
            guard let raw = value(name) else { return nil }
            guard let string = raw.stringValue, !string.isEmpty else {
                issues.append(ValidationIssue(field: name, message: "must be a non-empty string"))
                return nil
            }
            return string
        }
        filter.tenant = text("tenant")
        filter.destination = text("destination")
        filter.portOutID = text("portOut")
        filter.eventID = text("event")
        filter.type = text("type")
        if let statuses = text("status") {
            let parsed = statuses.split(separator: ",").map { PortOutStatus(rawValue: String($0)) }
            if parsed.isEmpty || parsed.contains(nil) {
                let names = PortOutStatus.allCases.map(\.rawValue).joined(separator: ", ")
                issues.append(ValidationIssue(field: "status", message: "must be one or more of \(names), comma-separated"))
            } else {
                filter.statuses = Set(parsed.compactMap { $0 })
            }
        }
        for (name, path) in [("from", \DeliveryFilter.acceptedFromMs), ("to", \DeliveryFilter.acceptedToMs)] {
            guard let time = text(name) else { continue }
            guard let seconds = RFC3339.parseSeconds(time) else {
                issues.append(ValidationIssue(field: name, message: "must be an RFC 3339 date-time such as 2026-11-02T09:00:00Z"))
                continue
            }
            let milliseconds = Self.milliseconds(bound: seconds)
            // An offset can move a time written in year 9999 or 0000 out of the years a saved job can hold.
            guard RFC3339.formattableMilliseconds.contains(milliseconds) else {
                issues.append(ValidationIssue(field: name, message: "must be from 0000-01-01T00:00:00Z to 9999-12-31T23:59:59Z in UTC"))
                continue
            }
            filter[keyPath: path] = milliseconds
        }
        if let only = value("deadLetteredOnly") {
            switch only {
            case .bool(let flag): filter.deadLetteredOnly = flag
            case .string("true"): filter.deadLetteredOnly = true
            case .string("false"): filter.deadLetteredOnly = false
            default: issues.append(ValidationIssue(field: "deadLetteredOnly", message: "must be true or false"))
            }
        }
        if let from = filter.acceptedFromMs, let to = filter.acceptedToMs, from >= to {
            issues.append(ValidationIssue(field: "to", message: "must be later than the from time"))
        }
        return issues.isEmpty ? .success(filter) : .failure(ValidationFailure(issues))
    }

    /// Converts a time bound in seconds to the first whole millisecond at or after it. Acceptance times are whole
    /// milliseconds, so an event is at or after a bound exactly when it is at or after that millisecond, for
    /// `from` and `to` alike. The 0.001 ms of slack is more than the binary rounding error of a three-digit
    /// fraction until 2106, when Unix seconds pass 2^32. Rounding down instead turned about a quarter of the
    /// millisecond values after 2038 (past 2^31 seconds) into the millisecond before.
    static func milliseconds(bound seconds: Double) -> Int64 {
        Int64((seconds * 1000 - 0.001).rounded(.up))
    }

    /// The filter as JSON, for job descriptions; unset fields are left out.
    var jsonValue: JSONValue {
        var object = JSONObject()
        object["tenant"] = self.tenant.map { .string($0) }
        object["destination"] = self.destination.map { .string($0) }
        object["portOut"] = self.portOutID.map { .string($0) }
        object["event"] = self.eventID.map { .string($0) }
        object["status"] = self.statuses.map { .string($0.map(\.rawValue).sorted().joined(separator: ",")) }
        object["type"] = self.type.map { .string($0) }
        object["from"] = self.acceptedFromMs.map { .string(RFC3339.format(epochMilliseconds: $0)) }
        object["to"] = self.acceptedToMs.map { .string(RFC3339.format(epochMilliseconds: $0)) }
        if self.deadLetteredOnly {
            object["deadLetteredOnly"] = true
        }
        return .object(object)
    }
}
