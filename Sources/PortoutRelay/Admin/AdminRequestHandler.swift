import Foundation
import PortoutCore
import PortoutCrypto
import PortoutDelivery
import PortoutHTTP
import Synchronization

/// Routes requests on the admin listener: metrics and destination control.
///
/// With `admin.token` set, every request needs `Authorization: Bearer <token>`. Without one, the listener is on
/// loopback, which configuration checks, and requests are not authenticated.
struct AdminRequestHandler: HTTPRequestHandler {
    let settings: AdminSettings
    let engine: DeliveryEngine
    let metrics: MetricsPage
    let replays: ReplayJobs
    let deadLetters: DeadLetterIndex
    let stalled: StalledPortOuts
    let logger: Logger

    /// The token, which a configuration reload may change while the listener stays.
    final class AdminSettings: Sendable {
        private let current: Locked<[UInt8]?>

        init(_ config: AdminConfig) {
            self.current = Locked(config.token.map { Array($0.value.utf8) })
        }

        var token: [UInt8]? {
            self.current.withLock { $0 }
        }

        func reload(_ config: AdminConfig) {
            let token = config.token.map { Array($0.value.utf8) }
            self.current.withLock { $0 = token }
        }
    }

    enum Route: Equatable {
        case metrics
        case destinations
        case unconfiguredDestinations
        case destination(tenant: String, id: String)
        case pause(tenant: String, id: String)
        case resume(tenant: String, id: String)
        case abandon(tenant: String, id: String)
        case replays
        case replay(id: String)
        case deadLetters
        case deliveries
        case redeliver
        case stalled

        var allowedMethods: [String] {
            switch self {
            case .metrics, .destinations, .unconfiguredDestinations, .destination, .deadLetters, .deliveries, .stalled:
                return ["GET", "HEAD"]
            case .pause, .resume, .abandon, .redeliver: return ["POST"]
            case .replays: return ["GET", "HEAD", "POST"]
            case .replay: return ["GET", "HEAD", "DELETE"]
            }
        }

        /// Parses the path; identifiers are restricted to URL-safe characters, so no segment needs decoding.
        static func parse(_ path: Substring) -> Route? {
            if path == "/metrics" { return .metrics }
            let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
            guard segments.count >= 2, segments[0] == "admin", !segments.contains(where: \.isEmpty) else { return nil }
            let rest = Array(segments.dropFirst(2))
            switch (segments[1], rest.count) {
            case ("destinations", 0): return .destinations
            case ("unconfigured-destinations", 0): return .unconfiguredDestinations
            case ("destinations", 2): return .destination(tenant: rest[0], id: rest[1])
            case ("destinations", 3) where rest[2] == "pause": return .pause(tenant: rest[0], id: rest[1])
            case ("destinations", 3) where rest[2] == "resume": return .resume(tenant: rest[0], id: rest[1])
            case ("destinations", 3) where rest[2] == "abandon": return .abandon(tenant: rest[0], id: rest[1])
            case ("replays", 0): return .replays
            case ("replays", 1): return .replay(id: rest[0])
            case ("dead-letters", 0): return .deadLetters
            case ("dead-letters", 1) where rest[0] == "redeliver": return .redeliver
            case ("deliveries", 0): return .deliveries
            case ("stalled", 0): return .stalled
            default: return nil
            }
        }
    }

    func checkHead(_ head: HTTPRequestHead, peer: String) -> HTTPResponse? {
        if case .failure(let error) = self.authenticate(head.headers) {
            self.logger.warning(
                "admin request rejected", ["reason": .string(error.code ?? "unauthorized"), "path": .string(String(head.path)), "peer": .string(peer)])
            return HTTPResponse(error: error)
        }
        guard let route = Route.parse(head.path) else {
            return HTTPResponse(error: .notFound("No admin resource at \(head.path)."))
        }
        guard route.allowedMethods.contains(head.method) else {
            return HTTPResponse(error: .methodNotAllowed(head.method, allowed: route.allowedMethods))
        }
        return nil
    }

    func handle(_ request: HTTPRequest, peer: String, responder: HTTPResponder) {
        let respond: @Sendable (HTTPResponse) -> Void = { responder.respond($0) }
        guard let route = Route.parse(request.head.path) else {
            respond(HTTPResponse(error: .notFound("No admin resource at \(request.head.path).")))
            return
        }
        switch route {
        case .metrics:
            self.metrics.render { text in
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: PrometheusText.contentType)
                respond(HTTPResponse(status: 200, headers: headers, body: Array(text.utf8)))
            }
        case .destinations:
            self.engine.snapshot { destinations, _ in
                let nowMs = WallClock.milliseconds()
                respond(HTTPResponse(status: 200, json: [
                    "object": "list", "data": .array(destinations.map { Self.destinationJSON($0, nowMs: nowMs) }),
                ]))
            }
        case .unconfiguredDestinations:
            self.engine.snapshot { _, unconfigured in
                let nowMs = WallClock.milliseconds()
                respond(HTTPResponse(status: 200, json: [
                    "object": "list", "data": .array(unconfigured.map { Self.unconfiguredJSON($0, nowMs: nowMs) }),
                ]))
            }
        case .destination(let tenant, let id):
            self.engine.snapshot { destinations, _ in
                guard let found = destinations.first(where: { $0.tenant == tenant && $0.destination == id }) else {
                    return respond(HTTPResponse(error: .notFound("No destination \(id) in tenant \(tenant).")))
                }
                respond(HTTPResponse(status: 200, json: Self.destinationJSON(found, nowMs: WallClock.milliseconds())))
            }
        case .pause(let tenant, let id), .resume(let tenant, let id):
            self.changeMode(route, tenant: tenant, id: id, body: request.body, peer: peer, respond: respond)
        case .abandon(let tenant, let id):
            self.abandon(tenant: tenant, id: id, body: request.body, peer: peer, respond: respond)
        case .replays where request.head.method == "POST":
            self.startReplay(body: request.body, peer: peer, respond: respond)
        case .replays:
            respond(self.listReplays(query: request.head.query))
        case .replay(let id):
            self.replay(id: id, method: request.head.method, peer: peer, respond: respond)
        case .deadLetters:
            respond(self.listDeadLetters(query: request.head.query))
        case .deliveries:
            self.listDeliveries(query: request.head.query, peer: peer, respond: respond)
        case .redeliver:
            self.redeliver(body: request.body, peer: peer, respond: respond)
        case .stalled:
            respond(self.listStalled(query: request.head.query))
        }
    }

    private func changeMode(
        _ route: Route, tenant: String, id: String, body: [UInt8], peer: String,
        respond: @escaping @Sendable (HTTPResponse) -> Void
    ) {
        let mode: DestinationMode = route == .pause(tenant: tenant, id: id) ? .paused : .active
        // Only a pause takes a reason; a resume takes no body fields.
        let givenReason: String?
        switch Self.reasonBody(body, known: mode == .paused ? ["reason"] : []) {
        case .failure(let error):
            return respond(HTTPResponse(error: error))
        case .success(let reason):
            givenReason = reason
        }
        let logger = self.logger
        self.engine.setMode(tenant: tenant, destination: id, mode: mode, reason: givenReason) { result in
            let action = mode == .paused ? "pause destination" : "resume destination"
            switch result {
            case .success(let statistics):
                logger.info(
                    "admin action",
                    ["action": .string(action), "tenant": .string(tenant), "destination": .string(id),
                     "reason": mode == .paused ? .string(statistics.modeReason) : .null,
                     "pending": .number(Double(statistics.pending)),
                     "peer": .string(peer)])
                respond(HTTPResponse(status: 200, json: Self.destinationJSON(statistics, nowMs: WallClock.milliseconds())))
            case .failure(.notFound):
                respond(HTTPResponse(error: .notFound("No destination \(id) in tenant \(tenant).")))
            case .failure(.stopped):
                respond(HTTPResponse(error: Self.shuttingDown))
            case .failure(.abandonmentInWrite):
                respond(HTTPResponse(error: .conflict(
                    code: "abandonmentInProgress",
                    "An abandonment of destination \(id) of tenant \(tenant) is being journaled. Retry the resume in "
                        + "a moment.")))
            case .failure(.notSaved(let error)):
                logger.error(
                    "admin action not saved",
                    ["action": .string(action), "tenant": .string(tenant), "destination": .string(id),
                     "error": .string(error), "peer": .string(peer)])
                respond(HTTPResponse(error: .internalError(
                    code: "modeNotSaved",
                    "The destination is \(mode.rawValue) now, but the change could not be saved: \(error). "
                        + "The relay tries again every 5 s and at its stop, and logs destination modes saved once "
                        + "a save succeeds; a crash before then loses the change.")))
            }
        }
    }

    /// The response to a change requested while the relay stops, which the stopped delivery thread can no longer
    /// make.
    static let shuttingDown = APIError.serviceUnavailable(
        code: "shuttingDown", "The relay is shutting down; nothing was changed.", retryAfterSeconds: 5)

    /// The longest `reason` that a pause or an abandonment takes, in bytes.
    static let maxReasonBytes = 500

    /// Parses an optional JSON object body whose fields are `known`, and returns its `reason`. A reason of
    /// whitespace only is taken as none, so that it neither erases a kept reason nor records a blank one.
    static func reasonBody(_ body: [UInt8], known: [String]) -> Result<String?, APIError> {
        Self.bodyObject(body, known: known).flatMap { object in
            guard let given = object["reason"] else { return .success(nil) }
            guard let text = given.stringValue, text.utf8.count <= Self.maxReasonBytes else {
                return .failure(.unprocessable(
                    code: "invalidParameters", "The request is invalid.",
                    details: [ValidationIssue(
                        field: "reason", message: "must be a string of at most \(Self.maxReasonBytes) bytes")]))
            }
            return .success(text.allSatisfy(\.isWhitespace) ? nil : text)
        }
    }

    private func authenticate(_ headers: HTTPHeaders) -> Result<Void, APIError> {
        guard let token = self.settings.token else { return .success(()) }
        switch BearerToken.presented(
            in: headers, credential: .adminToken, hint: "Send Authorization: Bearer <admin.token>.")
        {
        case .failure(let error):
            return .failure(error)
        case .success(let presented):
            guard ConstantTime.equals(token, presented) else {
                return .failure(
                    BearerToken.rejection(
                        code: BearerToken.Credential.adminToken.invalidCode, "The admin token is not valid.",
                        isWrongToken: true))
            }
            return .success(())
        }
    }

    /// Whole seconds from `ms` to `nowMs`, or null when there is no time.
    private static func ageSeconds(since ms: Int64?, nowMs: Int64) -> JSONValue {
        ms.map { .number(Double(max(0, nowMs - $0) / 1000)) } ?? .null
    }

    static func unconfiguredJSON(_ statistics: UnconfiguredDestinationStatistics, nowMs: Int64) -> JSONValue {
        .object(JSONObject([
            ("object", "unconfiguredDestination"),
            ("tenant", .string(statistics.tenant)),
            ("id", .string(statistics.destination)),
            ("cause", statistics.removedByReload ? "removedByReload" : "notConfiguredSinceStart"),
            ("queueDepth", .number(Double(statistics.pending))),
            ("inFlight", .number(Double(statistics.inFlight))),
            ("oldestPendingAgeSeconds", Self.ageSeconds(since: statistics.oldestPendingAcceptedAtMs, nowMs: nowMs)),
        ]))
    }

    static func destinationJSON(_ statistics: DestinationStatistics, nowMs: Int64) -> JSONValue {
        func time(_ ms: Int64?) -> JSONValue {
            ms.map { .string(RFC3339.format(epochMilliseconds: $0)) } ?? .null
        }
        return .object(JSONObject([
            ("object", "destination"),
            ("tenant", .string(statistics.tenant)),
            ("id", .string(statistics.destination)),
            ("mode", .string(statistics.mode.rawValue)),
            ("modeReason", statistics.modeReason.isEmpty ? .null : .string(statistics.modeReason)),
            ("breaker", statistics.isBreakerOpen ? "open" : "closed"),
            ("queueDepth", .number(Double(statistics.pending))),
            ("inFlight", .number(Double(statistics.inFlight))),
            ("oldestPendingAgeSeconds", Self.ageSeconds(since: statistics.oldestPendingAcceptedAtMs, nowMs: nowMs)),
            ("consecutiveFailures", .number(Double(statistics.consecutiveFailures))),
            ("lastError", statistics.lastError.map { .string($0) } ?? .null),
            ("lastErrorAt", time(statistics.lastErrorAtMs)),
            ("lastDeliveredAt", time(statistics.lastDeliveredAtMs)),
            ("delivered", .number(Double(statistics.delivered))),
            ("retries", .number(Double(statistics.retries))),
            ("deadLettered", .number(Double(statistics.deadLettered))),
            ("abandoned", .number(Double(statistics.abandoned))),
        ]))
    }
}
