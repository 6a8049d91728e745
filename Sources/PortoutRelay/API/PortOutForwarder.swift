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
        _ request: HTTPRequest, path carrierPath: CarrierAPIPath, peer: String,
        respond: @escaping @Sendable (HTTPResponse) -> Void
    ) {
        let project = carrierPath.project
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
        // None of the forwarded calls takes query parameters, so the target is the checked path alone.
        let path = carrierPath.canonicalPath
        var headers: [(name: String, value: String)] = [
            ("Authorization", "Bearer \(upstream.apiKey.value)"), ("Accept", "application/json"),
            ("User-Agent", DeliveryEngine.userAgent),
        ]
        if let contentType = request.head.headers["Content-Type"] {
            headers.append(("Content-Type", contentType))
        }
        // HEAD is sent as GET: the relay's server leaves out the body, and libcurl would wait for one otherwise.
        let method = request.head.method == "HEAD" ? "GET" : request.head.method
        let outbound = HTTPClient.Request(
            method: method, url: upstream.baseURL + path, headers: headers, body: request.body,
            timeoutMs: upstream.timeoutMs)
        let logger = self.logger
        self.client.send(outbound) { result in
            switch result {
            case .success(let response) where !Self.isRelayable(response):
                logger.warning(
                    "forwarded call failed",
                    ["tenant": .string(tenant.id), "method": .string(method), "path": .string(path),
                     "error": "the carrier's response cannot be relayed", "status": .number(Double(response.status))])
                respond(HTTPResponse(error: APIError(
                    status: 502, type: "badGateway", code: "upstreamInvalidResponse",
                    message: "The carrier API's response was malformed or too large to relay.")))
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

    /// Checks that a carrier response can be passed on as it is: a final status, a whole body and a clean
    /// Content-Type, which is copied into the relay's own response.
    static func isRelayable(_ response: HTTPClient.Response) -> Bool {
        guard (200...599).contains(response.status), !response.isTruncated else { return false }
        guard let contentType = response.contentType else { return true }
        return !contentType.utf8.contains { $0 < 0x20 || $0 == 0x7F }
    }
}
