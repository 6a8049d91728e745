import Foundation
import PortoutCore
import PortoutCrypto
import PortoutDelivery
import PortoutHTTP
import PortoutJournal
import Synchronization

/// The webhook intake: verifies, validates, dedupes and journals each event, and responds only after the
/// journal write has settled.
///
/// Thread-safety: called from every event-loop thread; shared state is behind `state`, and journal completions
/// arrive on the journal's writer thread.
final class Ingestor: Sendable {
    /// Replaced whole by a configuration reload; a request uses the tenant as it was when the request arrived.
    private let tenants: Locked<[String: TenantIntake]>
    let journal: Journal
    private let engine: DeliveryEngine
    private let portOuts: PortOutStore
    let logger: Logger
    let metrics: IngestMetrics
    let retryAfterSeconds: Int
    private let state: Locked<IngestState>
    /// Event writes alone, for `/readyz`: small outcome writes may still succeed while every event fails.
    let eventWrites = WriteHealth()

    init(
        config: RelayConfig, state: IngestState, journal: Journal, engine: DeliveryEngine, portOuts: PortOutStore,
        logger: Logger, metrics: IngestMetrics
    ) {
        self.metrics = metrics
        self.tenants = Locked(Self.intakes(config.tenants, metrics: metrics))
        self.journal = journal
        self.engine = engine
        self.portOuts = portOuts
        self.logger = logger
        self.retryAfterSeconds = config.journal.retryAfterSeconds
        self.state = Locked(state)
    }

    private static func intakes(_ tenants: [TenantConfig], metrics: IngestMetrics) -> [String: TenantIntake] {
        var intakes: [String: TenantIntake] = [:]
        for tenant in tenants {
            intakes[tenant.id] = TenantIntake(
                config: tenant, verifier: SignatureVerifier(tenant.verify), counters: metrics.counters(tenant: tenant.id))
        }
        return intakes
    }

    /// Swaps in the tenants of a reloaded configuration.
    func reload(tenants: [TenantConfig]) {
        let intakes = Self.intakes(tenants, metrics: self.metrics)
        self.tenants.withLock { $0 = intakes }
    }

    func hasTenant(_ id: String) -> Bool {
        self.tenants.withLock { $0[id] != nil }
    }

    /// Returns the counters of a configured tenant, or nil for an unknown one.
    func counters(tenant id: String) -> IngestMetrics.TenantCounters? {
        self.tenants.withLock { $0[id]?.counters }
    }

    /// Takes one webhook request for `tenantID` and calls `respond` exactly once.
    func ingest(
        tenantID: String, request: HTTPRequest, peer: String, respond: @escaping @Sendable (HTTPResponse) -> Void
    ) {
        guard let tenant = self.tenants.withLock({ $0[tenantID] }) else {
            self.metrics.countUnknownTenant()
            respond(HTTPResponse(error: .notFound("No tenant \(tenantID) is configured.")))
            return
        }
        switch self.check(request, tenant: tenant) {
        case .failure(let rejection):
            if rejection.error.status == 401 {
                tenant.counters.signatureFailed.increment()
                tenant.counters.signatureFailures.increment()
            } else {
                tenant.counters.invalid.increment()
            }
            self.logRejection(rejection, tenant: tenantID, peer: peer)
            respond(HTTPResponse(error: rejection.error))
        case .success(let event):
            self.admit(event, counters: tenant.counters, peer: peer, respond: respond)
        }
    }

    private struct Rejection: Error {
        var error: APIError
        var reason: String
    }

    /// Runs every check that needs no shared state, in the order that reveals least to an unauthenticated sender.
    private func check(_ request: HTTPRequest, tenant: TenantIntake) -> Result<IntakeEvent, Rejection> {
        let now = Int(Date().timeIntervalSince1970)
        if case .failure(let failure) = tenant.verifier.verify(headers: request.head.headers, body: request.body, nowSeconds: now) {
            return .failure(Rejection(error: failure.apiError, reason: failure.logReason))
        }
        // Content-Type is a single-value field (RFC 9110, section 8.3), and a downstream parser that took the
        // last of several could read the body differently.
        let (contentType, contentTypeCount) = request.head.headers.lookup("Content-Type")
        guard contentTypeCount <= 1 else {
            return .failure(Rejection(
                error: .badRequest(
                    code: "multipleContentTypes",
                    "The request has \(contentTypeCount) Content-Type header fields. Send exactly one."),
                reason: "multiple Content-Type fields"))
        }
        guard Self.isJSONMediaType(contentType) else {
            return .failure(Rejection(error: .unsupportedMediaType(contentType), reason: "unsupported media type"))
        }
        let body: JSONValue
        do {
            body = try JSONParser.parse(request.body)
        } catch {
            return .failure(Rejection(
                error: .badRequest(code: "invalidJSON", "The body is not valid JSON: \(error.description)."),
                reason: "invalid JSON"))
        }
        let event: ValidatedEvent
        switch EventValidator.validate(body) {
        case .failure(let failure):
            return .failure(Rejection(
                error: .unprocessable(code: "invalidEvent", "The event does not match the schema.", details: failure.issues),
                reason: "schema validation failed"))
        case .success(let validated):
            event = validated
        }
        return tenant.classify(event, body: request.body, query: request.head.query).mapError {
            Rejection(error: $0, reason: $0.code ?? "rejected")
        }
    }

    private func admit(
        _ event: IntakeEvent, counters: IngestMetrics.TenantCounters, peer: String,
        respond: @escaping @Sendable (HTTPResponse) -> Void
    ) {
        self.state.withLock { state in
            let decision = state.admit(
                dedupeKey: event.dedupeKey, lifecycleKey: event.lifecycleKey, status: event.status, project: event.project,
                projectCheckKey: event.projectCheckKey)
            switch decision {
            case .duplicate(let stale):
                counters.duplicate.increment()
                counters.duplicates.increment()
                respond(Self.receipt(event.eventID, duplicate: true, stale: stale))
            case .twinInFlight(let stale):
                let retryAfter = self.retryAfterSeconds
                state.waitForTwin(event.dedupeKey) { succeeded in
                    if succeeded {
                        counters.duplicate.increment()
                        counters.duplicates.increment()
                        respond(Self.receipt(event.eventID, duplicate: true, stale: stale))
                    } else {
                        counters.unavailable.increment()
                        respond(HTTPResponse(error: Self.journalUnavailable(retryAfter)))
                    }
                }
            case .accept(let sequence, let stale):
                let record = event.record(sequence: sequence, stale: stale, acceptedAtMs: WallClock.milliseconds())
                self.eventWrites.beginWrite()
                self.journal.append(.event(record)) { result in
                    self.finish(
                        event, record: record, result: result, counters: counters, respond: respond)
                }
            case .otherProject:
                counters.invalid.increment()
                let error = APIError.conflict(
                    code: "projectConflict",
                    "Port out \(event.portOutID) was accepted under another of tenant \(event.tenant.id)'s projects, "
                        + "and a port out belongs to one project.",
                    details: [ValidationIssue(field: "project", message: "differs from the port out's earlier events")])
                self.logRejection(Rejection(error: error, reason: "projectConflict"), tenant: event.tenant.id, peer: peer)
                respond(HTTPResponse(error: error))
            case .writesInFlight:
                // Decided again once the writes settle, so that a write that fails does not leave it stale.
                state.waitForWrites(event.lifecycleKey!) {
                    self.admit(event, counters: counters, peer: peer, respond: respond)
                }
            }
        }
    }

    /// Runs on the journal's writer thread once the event's write has settled.
    private func finish(
        _ event: IntakeEvent, record: EventRecord, result: Result<JournalLocation, JournalError>,
        counters: IngestMetrics.TenantCounters, respond: @Sendable (HTTPResponse) -> Void
    ) {
        switch result {
        case .success(let location):
            self.eventWrites.recordSuccess()
            let waiters = self.state.withLock {
                $0.confirm(
                    event.dedupeKey, lifecycleKey: event.lifecycleKey, status: event.status, stale: record.isStale,
                    projectCheckKey: event.projectCheckKey, project: event.project)
            }
            self.portOuts.apply(record, at: location)
            self.engine.submit(record.destinations.map { destination in
                PendingDelivery(
                    sequence: record.sequence, eventID: record.eventID, tenant: record.tenant,
                    destination: destination, orderingKey: event.orderingKey, location: location,
                    acceptedAtMs: record.acceptedAtMs)
            })
            counters.accepted.increment()
            if record.isStale {
                counters.stale.increment()
            }
            respond(Self.receipt(event.eventID, duplicate: false, stale: record.isStale))
            for waiter in waiters.twins {
                waiter(true)
            }
            for waiter in waiters.lifecycle {
                waiter()
            }
        case .failure:
            // The writer has logged the failure; here the key is released so the sender's retry is taken as new.
            self.eventWrites.recordFailure(atMs: WriteHealth.nowMs())
            let waiters = self.state.withLock {
                $0.abandon(event.dedupeKey, lifecycleKey: event.lifecycleKey, status: event.status,
                           stale: record.isStale, projectCheckKey: event.projectCheckKey)
            }
            counters.unavailable.increment()
            respond(HTTPResponse(error: Self.journalUnavailable(self.retryAfterSeconds)))
            for waiter in waiters.twins {
                waiter(false)
            }
            for waiter in waiters.lifecycle {
                waiter()
            }
        }
    }

    private static func journalUnavailable(_ retryAfter: Int) -> APIError {
        .serviceUnavailable(
            code: "journalUnavailable", "The event could not be stored; nothing was accepted.",
            retryAfterSeconds: retryAfter)
    }

    /// Builds the receipt body with the writer directly, without a `JSONValue` tree, since every accepted or
    /// duplicate webhook gets one.
    private static func receipt(_ eventID: String, duplicate: Bool, stale: Bool) -> HTTPResponse {
        var writer = JSONWriter(capacity: 96 + eventID.utf8.count)
        writer.appendRaw(#"{"object":"receipt","id":"#)
        writer.writeString(eventID)
        writer.appendRaw(duplicate ? #","duplicate":true,"stale":"# : #","duplicate":false,"stale":"#)
        writer.appendRaw(stale ? "true}" : "false}")
        return HTTPResponse(status: duplicate ? 200 : 202, jsonBytes: writer.bytes)
    }

    private static let jsonMediaTypes = ["application/json", "application/cloudevents+json"]

    /// Returns whether the media type, ignoring parameters, case and surrounding white space, is `application/json` or
    /// `application/cloudevents+json`. Compared on bytes because this runs on every webhook.
    static func isJSONMediaType(_ value: String?) -> Bool {
        guard var value else { return false }
        return value.withUTF8 { bytes in
            var end = bytes.firstIndex(of: UInt8(ascii: ";")) ?? bytes.count
            var start = 0
            while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 {
                start += 1
            }
            while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 {
                end -= 1
            }
            let mediaType = UnsafeBufferPointer(rebasing: bytes[start..<end])
            return Self.jsonMediaTypes.contains { expected in
                expected.utf8.withContiguousStorageIfAvailable { ASCII.equalsIgnoringCase(mediaType, $0) } ?? false
            }
        }
    }

    private func logRejection(_ rejection: Rejection, tenant: String, peer: String) {
        self.logger.info(
            "webhook rejected",
            ["reason": .string(rejection.reason), "status": .number(Double(rejection.error.status)),
             "tenant": .string(tenant), "peer": .string(peer)])
    }
}
