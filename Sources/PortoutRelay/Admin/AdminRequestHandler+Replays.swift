import PortoutCore
import PortoutDelivery
import PortoutHTTP
import PortoutJournal

/// Replays and dead letters on the admin listener.
extension AdminRequestHandler {
    static let maxPageSize = 200
    static let defaultPageSize = 50

    /// Returns the 429 for a replay or redelivery started while `unfinished` jobs are unfinished, where `limit`
    /// is the configured maximum.
    static func tooManyReplays(unfinished: Int, limit: Int) -> APIError {
        let jobs = unfinished == 1 ? "replay or redelivery is" : "replays and redeliveries are"
        return APIError(
            status: 429, type: "rateLimited", code: "tooManyReplays",
            message: "\(unfinished) \(jobs) unfinished, and the relay runs at most \(limit) at once (admin.maxUnfinishedReplays).",
            hint: "Wait for one to finish, or cancel one with DELETE /admin/replays/{id}.")
    }

    private func tooManyReplays() -> APIError {
        let registry = self.replays.registry
        return Self.tooManyReplays(unfinished: registry.unfinishedCount, limit: registry.maxUnfinishedJobs)
    }

    /// `POST /admin/replays`: a filter, and `dryRun` to count and sample the matches instead of queueing them.
    func startReplay(body: [UInt8], peer: String, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let object: JSONObject
        switch Self.bodyObject(body, known: DeliveryFilter.fieldNames + ["dryRun"]) {
        case .failure(let error): return respond(HTTPResponse(error: error))
        case .success(let parsed): object = parsed
        }
        let filter: DeliveryFilter
        switch self.nonEmptyFilter(object, missingField: "tenant", fields: DeliveryFilter.fieldNames) {
        case .failure(let error): return respond(HTTPResponse(error: error))
        case .success(let parsed): filter = parsed
        }
        for flag in ["dryRun", "deadLetteredOnly"] where object[flag] != nil && object[flag]?.boolValue == nil {
            return respond(HTTPResponse(error: .unprocessable(
                code: "invalidParameters", "The request is invalid.",
                details: [ValidationIssue(field: flag, message: "must be true or false")])))
        }
        if object["dryRun"]?.boolValue == true {
            self.replays.dryRun(filter) { result in
                switch result {
                case .failure(let failure):
                    respond(HTTPResponse(error: .unprocessable(code: "replayTooLarge", failure.description)))
                case .success(let preview):
                    respond(HTTPResponse(status: 200, json: [
                        "object": "replayPreview", "filter": filter.jsonValue, "count": .number(Double(preview.count)),
                        "sample": .array(preview.sample.map(Self.matchJSON)),
                    ]))
                }
            }
            return
        }
        guard let job = self.replays.startReplay(filter) else {
            return respond(HTTPResponse(error: self.tooManyReplays()))
        }
        self.logger.info(
            "admin action",
            ["action": "start replay", "replay": .string(job.id), "filter": filter.jsonValue, "peer": .string(peer)])
        respond(HTTPResponse(status: 202, json: job.jsonValue, headers: [("Location", "/admin/replays/\(job.id)")]))
    }

    /// `GET` or `DELETE /admin/replays/{id}`.
    func replay(id: String, method: String, peer: String, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        guard let job = self.replays.registry.job(id) else {
            return respond(HTTPResponse(error: .notFound(
                "No replay \(id). The relay keeps its jobs across restarts, but only the newest \(ReplayRegistry.maxFinishedJobs) finished ones. An offline replay is listed only once its deliveries were queued.")))
        }
        guard method == "DELETE" else {
            return respond(HTTPResponse(status: 200, json: job.jsonValue))
        }
        let logger = self.logger
        self.replays.cancel(job) { request in
            switch request {
            case .accepted:
                logger.info("admin action", ["action": "cancel replay", "replay": .string(id), "peer": .string(peer)])
                respond(HTTPResponse(status: 200, json: job.jsonValue))
            case .alreadyCancelled:
                respond(HTTPResponse(status: 200, json: job.jsonValue))
            case .finished(let status):
                respond(HTTPResponse(error: .conflict(
                    code: "replayFinished", "Replay \(id) has already \(status.rawValue); nothing is left to cancel.")))
            }
        }
    }

    /// `GET /admin/dead-letters`: filter fields, `limit` and `startingAfter` as query parameters.
    func listDeadLetters(query: Substring?) -> HTTPResponse {
        let parsed: ListQuery
        switch Self.listQuery(query, idPrefix: DeadLetter.idPrefix) {
        case .failure(let error): return HTTPResponse(error: error)
        case .success(let query): parsed = query
        }
        let matching = self.deadLetters.matching(parsed.filter).filter { parsed.after == nil || $0.key > parsed.after! }
        let page = matching.prefix(parsed.limit)
        return HTTPResponse(status: 200, json: [
            "object": "list", "data": .array(page.map(Self.deadLetterJSON)),
            "hasMore": .bool(matching.count > parsed.limit),
            "nextStartingAfter": matching.count > parsed.limit ? .string(page.last!.id) : .null,
        ])
    }

    /// `GET /admin/deliveries`: each delivery the filter takes, with every attempt and replay of it that the
    /// journal holds, oldest event first. Filter fields, `limit` and `startingAfter` as query parameters.
    func listDeliveries(query: Substring?, peer: String, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let parsed: ListQuery
        switch Self.listQuery(query, idPrefix: DeliveryHistory.Delivery.idPrefix) {
        case .failure(let error): return respond(HTTPResponse(error: error))
        case .success(let query): parsed = query
        }
        let logger = self.logger
        let started = self.replays.history(parsed.filter, after: parsed.after, limit: parsed.limit) { result in
            switch result {
            case .failure(.stopped):
                respond(HTTPResponse(error: .serviceUnavailable(
                    code: "shuttingDown", "The relay is shutting down. Retry the request after it restarts.",
                    retryAfterSeconds: 5)))
            case .failure(let failure):
                let isTransient = if case .journal(_, isTransient: true) = failure { true } else { false }
                logger.error(
                    "delivery history read failed",
                    ["error": .string(failure.description), "transient": .bool(isTransient),
                     "filter": parsed.filter.jsonValue, "peer": .string(peer)])
                respond(HTTPResponse(error: isTransient
                    ? .serviceUnavailable(
                        code: "journalReadUnavailable", "The delivery history could not be read for now.",
                        retryAfterSeconds: 1)
                    : .internalError(
                        code: "journalReadFailed", "The delivery history could not be read: \(failure.description).")))
            case .success(let page):
                if !page.damage.isEmpty {
                    logger.warning(
                        "delivery history read from a damaged journal",
                        ["damage": .array(page.damage.map { .string($0.description) }),
                         "effect": "steps in the damaged records are missing",
                         "action": "run portout-relay journal verify"])
                }
                respond(HTTPResponse(status: 200, json: [
                    "object": "list", "data": .array(page.deliveries.map(\.jsonValue)),
                    "hasMore": .bool(page.hasMore),
                    "nextStartingAfter": page.hasMore ? .string(page.deliveries.last!.id) : .null,
                    "journalDamaged": .bool(!page.damage.isEmpty),
                ]))
            }
        }
        if !started {
            respond(HTTPResponse(error: APIError(
                status: 429, type: "rateLimited", code: "deliveryHistoryBusy",
                message: "\(ReplayJobs.maxHistoryReads) delivery history reads are queued or running, and each "
                    + "reads the whole journal.",
                hint: "Retry after one has finished.")))
        }
    }

    /// The query of a list of deliveries: filter fields but `deadLetteredOnly`, a page size, and the id of the
    /// entry to start after.
    struct ListQuery {
        var filter: DeliveryFilter
        var limit: Int
        var after: DeliveryKey?
    }

    private static func listQuery(_ query: Substring?, idPrefix: String) -> Result<ListQuery, APIError> {
        let parameters = QueryParameters(query)
        var issues = parameters.issues()
        let known = Set(DeliveryFilter.fieldNames + ["limit", "startingAfter"]).subtracting(["deadLetteredOnly"])
        for name in parameters.names where !known.contains(name) {
            issues.append(ValidationIssue(field: name, message: "is not a parameter of this list"))
        }

        var filter = DeliveryFilter()
        switch DeliveryFilter.parse({ name in name == "deadLetteredOnly" ? nil : parameters[name].map { .string($0) } }) {
        case .failure(let failure): issues += failure.issues
        case .success(let parsed): filter = parsed
        }
        let limit = Self.pageSize(parameters, issues: &issues)

        var after: DeliveryKey?
        if let text = parameters["startingAfter"] {
            after = DeliveryKey(id: text, prefix: idPrefix)
            if after == nil {
                issues.append(ValidationIssue(
                    field: "startingAfter", message: "must be an id from this list, such as \(idPrefix)42_billing"))
            }
        }
        guard issues.isEmpty else {
            return .failure(.unprocessable(code: "invalidParameters", "The query is invalid.", details: issues))
        }
        return .success(ListQuery(filter: filter, limit: limit, after: after))
    }

    /// Reads the `limit` query parameter, or returns the default page size.
    private static func pageSize(_ parameters: QueryParameters, issues: inout [ValidationIssue]) -> Int {
        guard let text = parameters["limit"] else { return Self.defaultPageSize }
        guard let value = Int(text), (1...Self.maxPageSize).contains(value) else {
            issues.append(ValidationIssue(field: "limit", message: "must be an integer from 1 to \(Self.maxPageSize)"))
            return Self.defaultPageSize
        }
        return value
    }

    /// `GET /admin/replays`: newest first, with `status`, `limit` and `startingAfter` as query parameters.
    func listReplays(query: Substring?) -> HTTPResponse {
        let parameters = QueryParameters(query)
        var issues = parameters.issues()
        for name in parameters.names where !["status", "limit", "startingAfter"].contains(name) {
            issues.append(ValidationIssue(field: name, message: "is not a parameter of this list"))
        }
        var statuses: Set<ReplayJob.Status>?
        if let text = parameters["status"] {
            // Empty items are skipped, as in the replay filter's `status`.
            let parsed = text.split(separator: ",").map { ReplayJob.Status(rawValue: String($0)) }
            if parsed.isEmpty || parsed.contains(nil) {
                let names = ReplayJob.Status.allCases.map(\.rawValue).joined(separator: ", ")
                issues.append(ValidationIssue(field: "status", message: "must be one or more of \(names), comma-separated"))
            }
            statuses = Set(parsed.compactMap { $0 })
        }
        let limit = Self.pageSize(parameters, issues: &issues)
        var jobs = self.replays.registry.all()
        if let after = parameters["startingAfter"] {
            if let position = jobs.firstIndex(where: { $0.id == after }) {
                jobs.removeFirst(position + 1)
            } else {
                issues.append(ValidationIssue(
                    field: "startingAfter",
                    message: "must be the id of a listed replay, and \(after) is not listed. The relay drops the oldest finished jobs, so start again from the first page."))
            }
        }
        guard issues.isEmpty else {
            return HTTPResponse(error: .unprocessable(code: "invalidParameters", "The query is invalid.", details: issues))
        }

        let matching = jobs.filter { job in statuses?.contains(job.progress.withLock { $0.status }) ?? true }
        let page = matching.prefix(limit)
        return HTTPResponse(status: 200, json: [
            "object": "list", "data": .array(page.map(\.jsonValue)),
            "hasMore": .bool(matching.count > limit),
            "nextStartingAfter": matching.count > limit ? .string(page.last!.id) : .null,
        ])
    }

    /// `POST /admin/dead-letters/redeliver`: `{"ids": [...]}` or filter fields.
    func redeliver(body: [UInt8], peer: String, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let object: JSONObject
        // Every dead letter is dead-lettered, so the flag has no meaning here.
        let fields = DeliveryFilter.fieldNames.filter { $0 != "deadLetteredOnly" }
        switch Self.bodyObject(body, known: fields + ["ids"]) {
        case .failure(let error): return respond(HTTPResponse(error: error))
        case .success(let parsed): object = parsed
        }
        var chosen: [DeadLetter]
        var filter = DeliveryFilter()
        if let ids = object["ids"] {
            guard object.members.count == 1 else {
                return respond(HTTPResponse(error: .unprocessable(
                    code: "invalidParameters", "Give ids or filter fields, not both.",
                    details: [ValidationIssue(field: "ids", message: "cannot be combined with filter fields")])))
            }
            switch self.deadLetters(ids: ids) {
            case .failure(let failure):
                return respond(HTTPResponse(error: .unprocessable(code: "invalidParameters", "The ids are invalid.", details: failure.issues)))
            case .success(let found): chosen = found
            }
            let configured = self.engine.configuredDestinations()
            let unsendable = chosen.filter {
                !configured.contains(DeliveryEngine.key(tenant: $0.event.tenant, destination: $0.destination))
            }
            guard unsendable.isEmpty else {
                return respond(HTTPResponse(error: .unprocessable(
                    code: "invalidParameters", "Some dead letters belong to a destination that is not configured.",
                    details: unsendable.map { ValidationIssue(field: "ids", message: "\($0.id): destination \($0.destination) is not configured") })))
            }
        } else {
            switch self.nonEmptyFilter(object, missingField: "ids", fields: fields) {
            case .failure(let error): return respond(HTTPResponse(error: error))
            case .success(let parsed): filter = parsed
            }
            chosen = self.deadLetters.matching(filter)
        }
        filter.deadLetteredOnly = true
        guard let job = self.replays.startRedelivery(chosen, filter: filter, byIDs: object["ids"] != nil) else {
            return respond(HTTPResponse(error: self.tooManyReplays()))
        }
        self.logger.info(
            "admin action",
            ["action": "redeliver dead letters", "replay": .string(job.id), "deadLetters": .number(Double(chosen.count)),
             "filter": filter.jsonValue, "firstIds": .array(chosen.prefix(20).map { .string($0.id) }), "peer": .string(peer)])
        respond(HTTPResponse(status: 202, json: job.jsonValue, headers: [("Location", "/admin/replays/\(job.id)")]))
    }

    private func deadLetters(ids: JSONValue) -> Result<[DeadLetter], ValidationFailure> {
        guard let elements = ids.arrayValue, !elements.isEmpty, elements.count <= 10_000 else {
            return .failure(ValidationFailure([ValidationIssue(field: "ids", message: "must be an array of 1 to 10000 dead letter ids")]))
        }
        var keys: [DeliveryKey] = []
        var issues: [ValidationIssue] = []
        for (index, element) in elements.enumerated() {
            guard let key = element.stringValue.flatMap({ DeliveryKey(id: $0, prefix: DeadLetter.idPrefix) }) else {
                issues.append(ValidationIssue(field: "ids[\(index)]", message: "must be a dead letter id such as dl_42_billing"))
                continue
            }
            keys.append(key)
        }
        let found = self.deadLetters.lookup(keys)
        let foundKeys = Set(found.map(\.key))
        for (index, key) in keys.enumerated() where !foundKeys.contains(key) {
            issues.append(ValidationIssue(field: "ids[\(index)]", message: "is not a dead letter, or was already redelivered"))
        }
        return issues.isEmpty ? .success(found) : .failure(ValidationFailure(issues))
    }

    /// Parses the filter fields of a body and requires at least one of `fields`, the ones the request takes.
    /// `missingField` names what to add instead. A tenant or destination that is not configured is rejected,
    /// since nothing could be sent to it.
    private func nonEmptyFilter(
        _ object: JSONObject, missingField: String, fields: [String]
    ) -> Result<DeliveryFilter, APIError> {
        switch DeliveryFilter.parse({ object[$0] }) {
        case .failure(let failure):
            return .failure(.unprocessable(code: "invalidParameters", "The filter is invalid.", details: failure.issues))
        case .success(let filter) where filter.isEmpty:
            let others = fields.filter { $0 != missingField }.joined(separator: ", ")
            return .failure(.unprocessable(
                code: "filterRequired", "At least one filter field is required.",
                details: [ValidationIssue(field: missingField, message: "is required unless one of \(others) is set")]))
        case .success(let filter):
            let configured = self.engine.statistics().map { (tenant: $0.tenant, destination: $0.destination) }
            if let issue = filter.unconfiguredIssue(configured) {
                return .failure(.unprocessable(
                    code: "invalidParameters", "The filter names a tenant or destination that is not configured.",
                    details: [issue]))
            }
            return .success(filter)
        }
    }

    /// Parses an optional JSON object body, rejecting keys outside `known`.
    static func bodyObject(_ body: [UInt8], known: [String]) -> Result<JSONObject, APIError> {
        guard !body.isEmpty else { return .success(JSONObject()) }
        guard let object = (try? JSONParser.parse(body))?.objectValue else {
            return .failure(.badRequest(code: "invalidJSON", "The body must be a JSON object."))
        }
        let unknown = object.keys.filter { !known.contains($0) }
        guard unknown.isEmpty else {
            let expected = known.isEmpty ? "is not accepted; this request takes no body fields" : "is not one of \(known.joined(separator: ", "))"
            return .failure(.unprocessable(
                code: "invalidParameters", "The body has unknown fields.",
                details: unknown.map { ValidationIssue(field: $0, message: expected) }))
        }
        return .success(object)
    }

    static func matchJSON(_ match: ReplayScan.Match) -> JSONValue {
        .object(JSONObject(match.event.jsonMembers + [("destination", .string(match.destination))]))
    }

    static func deadLetterJSON(_ deadLetter: DeadLetter) -> JSONValue {
        .object(JSONObject(
            [("object", "deadLetter"), ("id", .string(deadLetter.id))] + deadLetter.event.jsonMembers + [
                ("destination", .string(deadLetter.destination)),
                ("deadLetteredAt", .string(RFC3339.format(epochMilliseconds: deadLetter.deadLetteredAtMs))),
                ("attempts", .number(Double(deadLetter.attempts))),
                ("httpStatus", deadLetter.httpStatus.map { .number(Double($0)) } ?? .null),
                ("reason", .string(deadLetter.reason)),
            ]))
    }
}
