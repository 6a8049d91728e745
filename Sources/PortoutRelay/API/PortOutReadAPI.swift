import PortoutCore
import PortoutCrypto
import PortoutHTTP
import PortoutJournal
import Synchronization

/// `GET /projects/{project}/portOuts` and `GET /projects/{project}/portOuts/{portOut}`, in the carrier's API
/// shape, served from the port outs the relay has accepted.
///
/// Requests carry `Authorization: Bearer <key>` with one of a tenant's `apiKeys`, and see only that tenant's
/// projects: a project of another tenant gets 404 exactly like a project that does not exist.
final class PortOutReadAPI: Sendable {
    let store: PortOutStore
    let logger: Logger
    /// Each API key with its tenant; replaced whole by a configuration reload.
    private let keys: Locked<[(key: [UInt8], tenant: TenantConfig)]>

    static let defaultStatuses: Set<PortOutStatus> = [.initiated, .processing, .issued]
    static let maxLimit = 200
    static let defaultLimit = 10

    init(tenants: [TenantConfig], store: PortOutStore, logger: Logger) {
        self.store = store
        self.logger = logger
        self.keys = Locked(Self.keys(of: tenants))
    }

    private static func keys(of tenants: [TenantConfig]) -> [(key: [UInt8], tenant: TenantConfig)] {
        tenants.flatMap { tenant in tenant.apiKeys.map { (Array($0.value.utf8), tenant) } }
    }

    /// Swaps in the keys and tenants of a reloaded configuration.
    func reload(tenants: [TenantConfig]) {
        let keys = Self.keys(of: tenants)
        self.keys.withLock { $0 = keys }
    }

    /// Finds the tenant whose key the request carries, comparing every configured key in constant time.
    func authenticate(_ headers: HTTPHeaders) -> Result<TenantConfig, APIError> {
        let presented: [UInt8]
        let hint = "Send Authorization: Bearer <key> with one of the tenant's apiKeys."
        switch BearerToken.presented(in: headers, credential: .apiKey, hint: hint) {
        case .failure(let error): return .failure(error)
        case .success(let token): presented = token
        }
        var found: TenantConfig?
        for candidate in self.keys.withLock({ $0 }) where ConstantTime.equals(candidate.key, presented) {
            found = candidate.tenant
        }
        guard let found else {
            return .failure(
                BearerToken.rejection(
                    code: BearerToken.Credential.apiKey.invalidCode, "The API key is not valid.", isWrongToken: true))
        }
        return .success(found)
    }

    func retrieve(project: String, id: String, headers: HTTPHeaders, peer: String) -> HTTPResponse {
        let tenant: TenantConfig
        switch self.authorize(project: project, headers: headers, peer: peer) {
        case .failure(let error): return HTTPResponse(error: error)
        case .success(let authorized): tenant = authorized
        }
        do {
            guard let portOut = try self.store.portOut(tenant: tenant.id, project: project, id: id) else {
                return HTTPResponse(error: .notFound("No port out \(id) in project \(project)."))
            }
            return HTTPResponse(status: 200, jsonBytes: portOut)
        } catch {
            return self.readFailed(error)
        }
    }

    func list(project: String, query: Substring?, headers: HTTPHeaders, peer: String) -> HTTPResponse {
        let tenant: TenantConfig
        switch self.authorize(project: project, headers: headers, peer: peer) {
        case .failure(let error): return HTTPResponse(error: error)
        case .success(let authorized): tenant = authorized
        }
        let listQuery: PortOutPaging.ListQuery
        switch Self.parseListQuery(QueryParameters(query)) {
        case .failure(let failure):
            return HTTPResponse(
                error: .unprocessable(code: "invalidParameters", "The query is invalid.", details: failure.issues))
        case .success(let parsed):
            listQuery = parsed
        }
        do {
            switch try self.store.list(tenant: tenant.id, project: project, listQuery) {
            case .failure(let error):
                return Self.listFailed(error, project: project)
            case .success(let (items, page)):
                return Self.listResponse(items: items, page: page)
            }
        } catch {
            return self.readFailed(error)
        }
    }

    /// Builds the carrier's list shape for one page from items that are already JSON.
    static func listResponse(items: [[UInt8]], page: PortOutPaging.Page) -> HTTPResponse {
        var writer = JSONWriter(capacity: 64 + items.reduce(0) { $0 + $1.count + 1 })
        writer.appendRaw(#"{"object":"list","items":["#)
        for (index, item) in items.enumerated() {
            if index > 0 {
                writer.appendRaw(",")
            }
            writer.appendRaw(item)
        }
        writer.appendRaw(#"],"moreItemsAfter":"#)
        writer.write(page.moreItemsAfter.map { .string($0) } ?? .null)
        writer.appendRaw(#","moreItemsBefore":"#)
        writer.write(page.moreItemsBefore.map { .string($0) } ?? .null)
        writer.appendRaw("}")
        return HTTPResponse(status: 200, jsonBytes: writer.bytes)
    }

    static func listFailed(_ error: PortOutPaging.ListError, project: String) -> HTTPResponse {
        switch error {
        case .unknownCursor(let parameter, let id):
            return HTTPResponse(error: .unprocessable(
                code: "invalidParameters", "The \(parameter) cursor names no port out of this project.",
                details: [ValidationIssue(field: parameter, message: "no port out \(id) in project \(project)")]))
        }
    }

    static func parseListQuery(_ parameters: QueryParameters) -> Result<PortOutPaging.ListQuery, ValidationFailure> {
        var issues = parameters.issues(among: ["status", "subscription", "after", "before", "limit"])
        var statuses = self.defaultStatuses
        if let text = parameters["status"] {
            statuses = []
            for name in text.split(separator: ",", omittingEmptySubsequences: false) {
                if let status = PortOutStatus(rawValue: String(name)) {
                    statuses.insert(status)
                } else {
                    issues.append(ValidationIssue(
                        field: "status",
                        message: "\"\(name)\" is not one of \(PortOutStatus.allCases.map(\.rawValue).joined(separator: ", "))"))
                }
            }
        }
        var limit = self.defaultLimit
        if let text = parameters["limit"] {
            if let value = Int(text), (0...self.maxLimit).contains(value) {
                limit = value
            } else {
                issues.append(ValidationIssue(field: "limit", message: "must be an integer from 0 to \(self.maxLimit)"))
            }
        }
        let after = parameters["after"]
        let before = parameters["before"]
        if after != nil && before != nil {
            issues.append(ValidationIssue(field: "before", message: "cannot be combined with after"))
        }
        for (name, value) in [("after", after), ("before", before), ("subscription", parameters["subscription"])] {
            if value?.isEmpty == true {
                issues.append(ValidationIssue(field: name, message: "must not be empty"))
            }
        }
        guard issues.isEmpty else { return .failure(ValidationFailure(issues)) }
        return .success(
            PortOutPaging.ListQuery(
                statuses: statuses, subscription: parameters["subscription"], after: after, before: before,
                limit: limit))
    }

    func authorize(project: String, headers: HTTPHeaders, peer: String) -> Result<TenantConfig, APIError> {
        switch self.authenticate(headers) {
        case .failure(let error):
            self.logger.info(
                "read request rejected", ["reason": .string(error.code ?? "unauthorized"), "peer": .string(peer)])
            return .failure(error)
        case .success(let tenant):
            guard tenant.projects.contains(project) else {
                return .failure(.notFound("No project \(project)."))
            }
            return .success(tenant)
        }
    }

    /// Returns 503 with `Retry-After` for a transient failure, such as running out of file descriptors, and 500
    /// for any other.
    private func readFailed(_ error: JournalError) -> HTTPResponse {
        self.logger.error(
            "port out read failed", ["error": .string(error.description), "transient": .bool(error.isTransient)])
        guard !error.isTransient else {
            return HTTPResponse(error: .serviceUnavailable(
                code: "journalReadUnavailable", "The port out could not be read from the journal for now.",
                retryAfterSeconds: 1))
        }
        return HTTPResponse(error: .internalError(
            code: "journalReadFailed", "The port out could not be read from the journal."))
    }
}
