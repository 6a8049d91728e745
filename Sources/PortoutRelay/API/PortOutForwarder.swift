import PortoutCore
import PortoutDelivery
import PortoutHTTP

/// The carrier API's write calls (create, expire, credentials, simulate), forwarded to the tenant's `upstream`
/// with the relay's own key, and returned with the carrier's status and body unchanged.
///
/// Callers authenticate as for the read API. Bodies pass through memory only: they are never logged or
/// journaled, because credentials responses carry account numbers and PINs.
struct PortOutForwarder: Sendable {
    let readAPI: PortOutReadAPI
    let client: HTTPClient
    let logger: Logger

    func forward(
        _ request: HTTPRequest, project: String, peer: String, respond: @escaping @Sendable (HTTPResponse) -> Void
    ) {
        let tenant: TenantConfig
        switch self.readAPI.authorize(project: project, headers: request.head.headers, peer: peer) {
        case .failure(let error):
            respond(HTTPResponse(error: error))
            return
        case .success(let authorized):
            tenant = authorized
        }
        guard let upstream = tenant.upstream else {
            respond(HTTPResponse(error: APIError(
                status: 501, type: "notImplemented", code: "upstreamNotConfigured",
                message: "Tenant \(tenant.id) has no upstream carrier API configured, so write calls cannot be forwarded.",
                hint: "Set tenants[].upstream.baseUrl and apiKey in the relay's configuration.")))
            return
        }
        let path = String(request.head.path)
        let target = request.head.query.map { path + "?" + $0 } ?? path
        var headers: [(name: String, value: String)] = [
            ("Authorization", "Bearer \(upstream.apiKey.value)"), ("Accept", "application/json"),
            ("User-Agent", DeliveryEngine.userAgent),
        ]
        if let contentType = request.head.headers["Content-Type"] {
            headers.append(("Content-Type", contentType))
        }
        let outbound = HTTPClient.Request(
            method: request.head.method, url: upstream.baseURL + target, headers: headers, body: request.body,
            timeoutMs: upstream.timeoutMs)
        let logger = self.logger
        let method = request.head.method
        self.client.send(outbound) { result in
            switch result {
            case .success(let response):
                logger.info(
                    "call forwarded",
                    ["tenant": .string(tenant.id), "method": .string(method), "path": .string(path),
                     "status": .number(Double(response.status))])
                var responseHeaders = HTTPHeaders()
                responseHeaders.add(name: "Content-Type", value: response.contentType ?? "application/json")
                respond(HTTPResponse(status: response.status, headers: responseHeaders, body: response.body))
            case .failure(let error):
                logger.warning(
                    "forwarded call failed",
                    ["tenant": .string(tenant.id), "method": .string(method), "path": .string(path),
                     "error": .string(error.description)])
                respond(HTTPResponse(error: APIError(
                    status: 502, type: "badGateway", code: "upstreamUnreachable",
                    message: "The carrier API did not respond: \(error.description).")))
            }
        }
    }
}
