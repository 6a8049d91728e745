import PortoutCore
import PortoutHTTP

/// Routes requests on the main listener: webhook intake and the health endpoints.
struct RelayRequestHandler: HTTPRequestHandler {
    let ingestor: Ingestor
    let readAPI: PortOutReadAPI
    let forwarder: PortOutForwarder

    /// How long a journal write may take before `/readyz` returns 503, where a healthy `fdatasync` takes milliseconds.
    static let stalledWriteSeconds = 5.0

    private enum Route {
        case webhook(tenant: String)
        case health
        case readiness
        case openAPI
        case carrierAPI(CarrierAPIPath)
    }

    private static let webhookPrefix = "/webhooks/"

    /// Finds the route for a path and the methods it allows, or nil for an unknown path.
    ///
    /// Prefixes are compared on UTF-8 bytes, because `Substring.hasPrefix` compares characters and took more
    /// time than the rest of routing on every webhook.
    private static func route(_ path: Substring) -> (Route, allowed: [String])? {
        let bytes = path.utf8
        if bytes.starts(with: self.webhookPrefix.utf8) {
            let tenant = path.utf8.dropFirst(self.webhookPrefix.utf8.count)
            guard !tenant.isEmpty, !tenant.contains(UInt8(ascii: "/")) else { return nil }
            // Tenant ids rarely need escapes, so the common case skips decoding.
            if !tenant.contains(UInt8(ascii: "%")) {
                return (.webhook(tenant: String(Substring(tenant))), ["POST"])
            }
            guard let decoded = QueryParameters.decode(Substring(tenant), plusIsSpace: false) else { return nil }
            return (.webhook(tenant: decoded), ["POST"])
        }
        if bytes.starts(with: "/projects/".utf8) || bytes.starts(with: "/testing/projects/".utf8) {
            return CarrierAPIPath.parse(path).map { (.carrierAPI($0), $0.allowedMethods) }
        }
        switch path {
        case "/healthz": return (.health, ["GET", "HEAD"])
        case "/readyz": return (.readiness, ["GET", "HEAD"])
        case "/openapi.json": return (.openAPI, ["GET", "HEAD"])
        default: return nil
        }
    }

    /// Rejects unknown paths, wrong methods, unknown tenants and Port Out API calls without a valid key for the
    /// project before their bodies are read.
    func checkHead(_ head: HTTPRequestHead, peer: String) -> HTTPResponse? {
        guard let (route, allowed) = Self.route(head.path) else {
            return HTTPResponse(error: .notFound("No resource at \(head.path)."))
        }
        guard allowed.contains(head.method) else {
            return HTTPResponse(error: .methodNotAllowed(head.method, allowed: allowed))
        }
        switch route {
        case .webhook(let tenant) where !self.ingestor.hasTenant(tenant):
            self.ingestor.metrics.countUnknownTenant()
            self.ingestor.logger.info(
                "webhook rejected", ["reason": "unknown tenant", "status": 404, "tenant": .string(tenant), "peer": .string(peer)])
            return HTTPResponse(error: .notFound("No tenant \(tenant) is configured."))
        case .carrierAPI(let path):
            // Checked again in `handle`, since a reload may change the keys while the body is read.
            let authorized = self.readAPI.authorize(project: path.project, headers: head.headers, peer: peer)
            if case .failure(let error) = authorized {
                return HTTPResponse(error: error)
            }
            return nil
        default:
            return nil
        }
    }

    /// Counts a webhook whose body was over `limits.maxBodyBytes`. The carrier gets the same 413 on every retry, so
    /// the event is lost unless someone raises the limit, and the count is what an alert can see. One for a tenant
    /// that is not configured counts as `unknownTenant`, as it would with a smaller body, since that is what
    /// loses it.
    ///
    /// For a configured tenant, the log message differs from other webhook rejections, so that a flood of large
    /// bodies, whose lines the logger suppresses beyond 50 a second, does not hide those.
    func rejected(_ error: HTTPParseError, peer: String) -> Bool {
        guard error.status == 413, let head = error.head, head.method == "POST",
            case .webhook(let tenant)? = Self.route(head.path)?.0
        else { return false }
        guard let counters = self.ingestor.counters(tenant: tenant) else {
            self.ingestor.metrics.countUnknownTenant()
            self.ingestor.logger.info(
                "webhook rejected",
                ["reason": "unknown tenant", "status": 413, "tenant": .string(tenant), "peer": .string(peer)])
            return true
        }
        counters.tooLarge.increment()
        self.ingestor.logger.warning(
            "webhook body over the limit",
            ["reason": .string(error.reason), "status": 413, "tenant": .string(tenant), "peer": .string(peer)])
        return true
    }

    func handle(_ request: HTTPRequest, peer: String, responder: HTTPResponder) {
        guard let (route, _) = Self.route(request.head.path) else {
            responder.respond(HTTPResponse(error: .notFound("No resource at \(request.head.path).")))
            return
        }
        switch route {
        case .health:
            responder.respond(HTTPResponse(status: 200, json: ["status": "ok"]))
        case .readiness:
            // A failure counts for as long as the Retry-After that the 503s carry.
            let nowMs = WriteHealth.nowMs()
            let windowMs = Int64(self.ingestor.retryAfterSeconds) * 1000
            let journalWrites = self.ingestor.journal.metrics.writes
            if self.ingestor.eventWrites.isFailing(nowMs: nowMs, windowMs: windowMs)
                || journalWrites.isFailing(nowMs: nowMs, windowMs: windowMs)
            {
                responder.respond(HTTPResponse(
                    status: 503,
                    json: ["status": "notReady", "reason": "the last journal write failed"]))
            } else if journalWrites.inFlightSeconds(nowMs: nowMs) >= Self.stalledWriteSeconds {
                // A disk that stops responding fails no write, and every acknowledgement waits for it meanwhile.
                responder.respond(HTTPResponse(
                    status: 503,
                    json: [
                        "status": "notReady",
                        "reason": .string(
                            "a journal write has not returned for \(Int(Self.stalledWriteSeconds)) s or more"),
                    ]))
            } else {
                responder.respond(HTTPResponse(status: 200, json: ["status": "ready"]))
            }
        case .openAPI:
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/json")
            responder.respond(HTTPResponse(status: 200, headers: headers, body: OpenAPIDocument.bytes))
        case .carrierAPI(let path) where path == .portOuts(project: path.project) && request.head.method == "POST":
            self.forwarder.forward(request, path: path, peer: peer) { responder.respond($0) }
        case .carrierAPI(.portOuts(let project)):
            responder.respond(
                self.readAPI.list(project: project, query: request.head.query, headers: request.head.headers, peer: peer))
        case .carrierAPI(.portOut(let project, let id)):
            responder.respond(self.readAPI.retrieve(project: project, id: id, headers: request.head.headers, peer: peer))
        case .carrierAPI(let path):
            // Expire, credentials and simulate change or reveal carrier state, so the carrier answers them.
            self.forwarder.forward(request, path: path, peer: peer) { responder.respond($0) }
        case .webhook(let tenant):
            self.ingestor.ingest(tenantID: tenant, request: request, peer: peer) { response in
                responder.respond(response)
            }
        }
    }
}
