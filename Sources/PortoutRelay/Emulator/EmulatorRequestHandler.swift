import Foundation
import PortoutCore
import PortoutCrypto
import PortoutHTTP
import Synchronization

/// The emulator's HTTP API: every endpoint of the carrier's Port Out API, with its validation and error shapes.
final class EmulatorRequestHandler: HTTPRequestHandler {
    private let emulator = Locked<CarrierEmulator?>(nil)

    func attach(_ emulator: CarrierEmulator?) {
        self.emulator.withLock { $0 = emulator }
    }

    func checkHead(_ head: HTTPRequestHead, peer: String) -> HTTPResponse? {
        if head.path == "/healthz" {
            return head.method == "GET" || head.method == "HEAD"
                ? nil : HTTPResponse(error: .methodNotAllowed(head.method, allowed: ["GET", "HEAD"]))
        }
        guard let path = CarrierAPIPath.parse(head.path) else {
            return HTTPResponse(error: .notFound("No resource at \(head.path)."))
        }
        guard path.allowedMethods.contains(head.method) else {
            return HTTPResponse(error: .methodNotAllowed(head.method, allowed: path.allowedMethods))
        }
        return nil
    }

    func handle(_ request: HTTPRequest, peer: String, responder: HTTPResponder) {
        guard let emulator = self.emulator.withLock({ $0 }) else {
            responder.respond(HTTPResponse(error: .serviceUnavailable(
                code: "shuttingDown", "The emulator is shutting down.", retryAfterSeconds: 1)))
            return
        }
        if request.head.path == "/healthz" {
            responder.respond(HTTPResponse(status: 200, json: ["status": "ok"]))
            return
        }
        emulator.queue.async {
            responder.respond(emulator.answer(request))
        }
    }
}

extension CarrierEmulator {
    /// Handles one API request and returns its response. Call on `queue`.
    func answer(_ request: HTTPRequest) -> HTTPResponse {
        guard let path = CarrierAPIPath.parse(request.head.path) else {
            return HTTPResponse(error: .notFound("No resource at \(request.head.path)."))
        }
        let key: EmulatorSettings.APIKey
        switch self.authenticate(request.head.headers) {
        case .failure(let error): return HTTPResponse(error: error)
        case .success(let found): key = found
        }
        guard let project = self.settings.projects.first(where: { $0.id == path.project }) else {
            return HTTPResponse(error: .notFound("No project \(path.project)."))
        }
        switch path {
        case .portOuts where request.head.method == "POST":
            return self.create(request.body, project: project)
        case .portOuts:
            return self.list(project: project.id, query: request.head.query)
        case .portOut(_, let id):
            return self.withPortOut(id, project: project.id) { HTTPResponse(status: 200, json: $0.jsonValue) }
        case .expire(_, let id):
            return self.withPortOut(id, project: project.id) { portOut in
                guard let expired = self.advance(id, from: [.initiated, .processing, .issued], to: .expired) else {
                    return HTTPResponse(error: .unprocessable(
                        code: "portOutNotExpirable",
                        "Only initiated, processing and issued port outs can be expired; this one is \(portOut.status.rawValue)."))
                }
                return HTTPResponse(status: 200, json: expired.jsonValue)
            }
        case .simulate(_, let id):
            return self.withPortOut(id, project: project.id) { portOut in
                guard let completed = self.advance(id, from: [.initiated, .processing, .issued], to: .completed) else {
                    return HTTPResponse(error: .unprocessable(
                        code: "portOutNotCompletable", "The port out is already \(portOut.status.rawValue)."))
                }
                return HTTPResponse(status: 200, json: completed.jsonValue)
            }
        case .credentials(_, let id):
            guard key.mayReadCredentials else {
                return HTTPResponse(error: APIError(
                    status: 403, type: "forbidden", code: "permissionDenied",
                    message: "This API key may not read port-out credentials."))
            }
            return self.withPortOut(id, project: project.id) { portOut in
                guard portOut.status == .issued, let credentials = self.state.credentials[id] else {
                    return HTTPResponse(error: .unprocessable(
                        code: "portOutNotIssued",
                        "Credentials exist only while a port out is issued; this one is \(portOut.status.rawValue)."))
                }
                return HTTPResponse(
                    status: 200,
                    json: [
                        "object": "portOutCredentials", "accountNumber": .string(credentials.accountNumber),
                        "accountPin": .string(credentials.accountPin), "portOut": .string(id),
                    ])
            }
        }
    }

    private func authenticate(_ headers: HTTPHeaders) -> Result<EmulatorSettings.APIKey, APIError> {
        let bytes: [UInt8]
        let hint = "Send Authorization: Bearer <key> with one of the --api-keys."
        switch BearerToken.presented(in: headers, credential: .apiKey, hint: hint) {
        case .failure(let error): return .failure(error)
        case .success(let presented): bytes = presented
        }
        var found: EmulatorSettings.APIKey?
        for key in self.settings.apiKeys where ConstantTime.equals(Array(key.key.utf8), bytes) {
            found = key
        }
        guard let found else {
            return .failure(
                BearerToken.rejection(
                    code: BearerToken.Credential.apiKey.invalidCode, "The API key is not valid.", isWrongToken: true))
        }
        return .success(found)
    }

    private func withPortOut(_ id: String, project: String, _ body: (PortOut) -> HTTPResponse) -> HTTPResponse {
        guard let stored = self.state.portOuts[id], stored.project == project else {
            return HTTPResponse(error: .notFound("No port out \(id) in project \(project)."))
        }
        return body(stored.portOut)
    }

    private func create(_ body: [UInt8], project: EmulatorSettings.Project) -> HTTPResponse {
        guard let object = (try? JSONParser.parse(body))?.objectValue else {
            return HTTPResponse(error: .unprocessable(
                code: "invalidBody", "The body must be a JSON object.",
                details: [ValidationIssue(field: "$", message: "must be a JSON object")]))
        }
        var issues: [ValidationIssue] = []
        let subscription = object["subscription"]?.stringValue
        if subscription?.isEmpty ?? true {
            issues.append(ValidationIssue(field: "subscription", message: "is required and must be a non-empty string"))
        } else if let subscription, subscription.utf8.count > 255 || subscription.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
            // The id goes into every webhook, which the relay rejects with such ids.
            issues.append(ValidationIssue(field: "subscription", message: "must be at most 255 bytes with no control characters"))
        }
        var behavior = "portOut"
        if let value = object["behavior"] {
            if let text = value.stringValue, PortOut.behaviors.contains(text) {
                behavior = text
            } else {
                issues.append(ValidationIssue(field: "behavior", message: "must be cancelOnly or portOut"))
            }
        }
        for key in object.keys where key != "subscription" && key != "behavior" {
            issues.append(ValidationIssue(field: key, message: "is not a field of a port-out creation"))
        }
        if behavior == "cancelOnly" && !project.isUnitedKingdom {
            issues.append(ValidationIssue(field: "behavior", message: "cancelOnly is only available for UK projects"))
        }
        guard issues.isEmpty, let subscription else {
            return HTTPResponse(error: .unprocessable(code: "invalidParameters", "The port out cannot be created.", details: issues))
        }
        let portOut = self.createPortOut(project: project.id, subscription: subscription, behavior: behavior, generated: false)
        return HTTPResponse(status: 201, json: portOut.jsonValue)
    }

    private func list(project: String, query: Substring?) -> HTTPResponse {
        let listQuery: PortOutPaging.ListQuery
        switch PortOutReadAPI.parseListQuery(QueryParameters(query)) {
        case .failure(let failure):
            return HTTPResponse(error: .unprocessable(code: "invalidParameters", "The query is invalid.", details: failure.issues))
        case .success(let parsed):
            listQuery = parsed
        }
        let result = PortOutPaging.page(order: self.state.orders[project] ?? SortedChunks(), listQuery) { id in
            self.state.portOuts[id].flatMap { stored in
                stored.project != project
                    ? nil
                    : PortOutPaging.Summary(
                        status: stored.portOut.status, subscription: stored.portOut.subscription,
                        createdAtMs: stored.createdAtMs)
            }
        }
        switch result {
        case .failure(let error):
            return PortOutReadAPI.listFailed(error, project: project)
        case .success(let page):
            let items = page.ids.compactMap { self.state.portOuts[$0].map { JSONWriter.encode($0.portOut.jsonValue) } }
            return PortOutReadAPI.listResponse(items: items, page: page)
        }
    }
}
