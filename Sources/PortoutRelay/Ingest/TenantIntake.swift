import PortoutCore
import PortoutCrypto
import PortoutJournal

/// A tenant's intake rules: its signature check, projects, accepted types and destination filters.
///
/// A class, like `IntakeEvent`, so that each request and the closures waiting on its journal write retain it
/// once instead of copying the configuration, whose every string and array costs a retain and a release.
final class TenantIntake: Sendable {
    let config: TenantConfig
    let verifier: SignatureVerifier
    let counters: IngestMetrics.TenantCounters

    init(config: TenantConfig, verifier: SignatureVerifier, counters: IngestMetrics.TenantCounters) {
        self.config = config
        self.verifier = verifier
        self.counters = counters
    }

    /// Applies the tenant's project and type rules and derives the event's keys.
    func classify(_ event: ValidatedEvent, body: [UInt8], query: Substring?) -> Result<IntakeEvent, APIError> {
        let project: String
        if let envelopeProject = event.project {
            // An envelope names its project, so `?project=` is not read for it.
            project = envelopeProject
        } else {
            switch self.bareObjectProject(query) {
            case .success(let requested): project = requested
            case .failure(let error): return .failure(error)
            }
        }
        guard self.config.projects.contains(project) else {
            return .failure(.unprocessable(
                code: "projectNotAllowed", "Project \(project) is not one of tenant \(self.config.id)'s projects.",
                details: [ValidationIssue(field: "project", message: "must be one of the tenant's projects")]))
        }
        switch event.kind {
        case .statusChange, .credentialsIssued:
            break
        case .portOutUpdated, .other:
            guard self.config.acceptTypes.contains(event.type) else {
                return .failure(.unprocessable(
                    code: "eventTypeNotAccepted", "Event type \(event.type) is not accepted for this tenant.",
                    details: [ValidationIssue(field: "type", message: "is not in the tenant's acceptTypes")]))
            }
        }
        return .success(IntakeEvent(intake: self, event: event, project: project, body: body))
    }

    /// Returns the project of a bare `portOut` object, which carries none: `?project=`, or the tenant's only one.
    private func bareObjectProject(_ query: Substring?) -> Result<String, APIError> {
        let parameters = QueryParameters(query)
        let issues = parameters.issues(among: ["project"])
        guard issues.isEmpty else {
            return .failure(.unprocessable(code: "invalidParameters", "The project parameter is invalid.", details: issues))
        }
        if let requested = parameters["project"] {
            return .success(requested)
        }
        if self.config.projects.count == 1 {
            return .success(self.config.projects[0])
        }
        return .failure(.unprocessable(
            code: "projectRequired",
            "A bare portOut object needs a project: add ?project= to the URL, since tenant \(self.config.id) has several."))
    }
}

/// An event that passed every stateless check, with the keys dedupe, the lifecycle and ordering use.
///
/// A class, because the closures that wait for the journal write and for an in-flight twin each capture it.
final class IntakeEvent: Sendable {
    let intake: TenantIntake
    let eventID: String
    let type: String
    let project: String
    let portOutID: String
    let status: PortOutStatus?
    let isBare: Bool
    let dedupeKey: DigestKey
    let lifecycleKey: DigestKey?
    /// The (tenant, port out) key of an event that carries a port out but no status change, such as `.updated`.
    /// It is only checked against the project of the port out's statuses, so it is not journaled.
    let projectCheckKey: DigestKey?
    let orderingKey: String
    let body: [UInt8]
    let portOut: PortOut?

    var tenant: TenantConfig {
        self.intake.config
    }

    init(intake: TenantIntake, event: ValidatedEvent, project: String, body: [UInt8]) {
        let tenant = intake.config
        self.intake = intake
        self.type = event.type
        self.project = project
        self.portOutID = event.portOut?.id ?? ""
        self.status = event.lifecycleStatus
        self.isBare = event.isBare
        self.body = body
        self.portOut = event.portOut
        if let status = self.status {
            let hasher = SHA256Hasher()
            self.dedupeKey = IngestKeys.dedupe(tenant: tenant.id, portOutID: self.portOutID, status: status, hasher: hasher)
            self.lifecycleKey = IngestKeys.lifecycle(tenant: tenant.id, portOutID: self.portOutID, hasher: hasher)
            // A bare object carries no event id; one derived from its dedupe key stays the same on every resend.
            self.eventID = event.id ?? "evt_bare_" + self.dedupeKey.description
            self.projectCheckKey = nil
        } else {
            let eventID = event.id ?? ""
            self.eventID = eventID
            self.dedupeKey = IngestKeys.dedupe(tenant: tenant.id, eventID: eventID)
            self.lifecycleKey = nil
            self.projectCheckKey = event.portOut.map { IngestKeys.lifecycle(tenant: tenant.id, portOutID: $0.id) }
        }
        self.orderingKey = self.portOutID.isEmpty ? self.eventID : self.portOutID
    }

    func record(sequence: UInt64, stale: Bool, acceptedAtMs: Int64) -> EventRecord {
        let destinations = self.tenant.destinations.filter {
            $0.accepts(type: self.type, status: self.status, stale: stale)
        }.map(\.id)
        var record = EventRecord(
            // `.updated` events keep their port out's status too, though it plays no part in dedupe.
            sequence: sequence, acceptedAtMs: acceptedAtMs, isStale: stale, isBare: self.isBare,
            status: self.portOut?.status,
            dedupeKey: self.dedupeKey, lifecycleKey: self.lifecycleKey, tenant: self.tenant.id, eventID: self.eventID,
            type: self.type, portOutID: self.portOutID, project: self.project, destinations: destinations,
            body: self.body)
        if let portOut = self.portOut {
            record.portOutCreatedAtMs = Int64((RFC3339.parseSeconds(portOut.createdAt) ?? 0) * 1000)
            record.subscription = portOut.subscription
        }
        return record
    }
}
