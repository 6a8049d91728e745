import PortoutCore
import PortoutHTTP

/// Routes requests on the main listener: webhook intake and the health endpoints.
struct RelayRequestHandler: HTTPRequestHandler {
    let ingestor: Ingestor

    private enum Route {
        case webhook(tenant: String)
        case health
        case readiness
    }

    private static let webhookPrefix = "/webhooks/"

    /// Finds the route for a path and the methods it allows, or nil for an unknown path.
    private static func route(_ path: Substring) -> (Route, allowed: [String])? {
        switch path {
        case "/healthz": return (.health, ["GET", "HEAD"])
        case "/readyz": return (.readiness, ["GET", "HEAD"])
        default:
            guard path.hasPrefix(self.webhookPrefix) else { return nil }
            let tenant = path.dropFirst(self.webhookPrefix.count)
            guard !tenant.isEmpty, !tenant.utf8.contains(UInt8(ascii: "/")) else { return nil }
            // Tenant ids rarely need escapes, so the common case skips decoding.
            if !tenant.utf8.contains(UInt8(ascii: "%")) {
                return (.webhook(tenant: String(tenant)), ["POST"])
            }
            guard let decoded = QueryParameters.decode(tenant, plusIsSpace: false) else { return nil }
            return (.webhook(tenant: decoded), ["POST"])
        }
    }

    /// Rejects unknown paths, wrong methods and unknown tenants before their bodies are read.
    func checkHead(_ head: HTTPRequestHead, peer: String) -> HTTPResponse? {
        guard let (route, allowed) = Self.route(head.path) else {
            return HTTPResponse(error: .notFound("No resource at \(head.path)."))
        }
        guard allowed.contains(head.method) else {
            return HTTPResponse(error: .methodNotAllowed(head.method, allowed: allowed))
        }
        if case .webhook(let tenant) = route, !self.ingestor.hasTenant(tenant) {
            self.ingestor.logger.info(
                "webhook rejected", ["reason": "unknown tenant", "status": 404, "tenant": .string(tenant), "peer": .string(peer)])
            return HTTPResponse(error: .notFound("No tenant \(tenant) is configured."))
        }
        return nil
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
            if self.ingestor.journalHealthy.load(ordering: .relaxed) {
                responder.respond(HTTPResponse(status: 200, json: ["status": "ready"]))
            } else {
                responder.respond(HTTPResponse(
                    status: 503,
                    json: ["status": "notReady", "reason": "the last journal write failed"]))
            }
        case .webhook(let tenant):
            self.ingestor.ingest(tenantID: tenant, request: request, peer: peer) { response in
                responder.respond(response)
            }
        }
    }
}
