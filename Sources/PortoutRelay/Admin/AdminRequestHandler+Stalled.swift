import PortoutCore
import PortoutDelivery
import PortoutHTTP

/// Stalled port outs on the admin listener.
extension AdminRequestHandler {
    /// `GET /admin/stalled`: `olderThan` (such as `2h`) replaces the configured thresholds; `tenant`, `status`
    /// and `limit` narrow the list.
    func listStalled(query: Substring?) -> HTTPResponse {
        let parameters = QueryParameters(query)
        var issues = parameters.issues()
        for name in parameters.names where !["olderThan", "tenant", "status", "limit"].contains(name) {
            issues.append(ValidationIssue(field: name, message: "is not a parameter of this list"))
        }
        var olderThan: Int?
        if let text = parameters["olderThan"] {
            olderThan = StalledPortOuts.parseDuration(text)
            if olderThan == nil {
                issues.append(ValidationIssue(field: "olderThan", message: "must be a duration such as 90s, 15m, 2h or 3d"))
            }
        }
        var statuses: Set<PortOutStatus>?
        if let text = parameters["status"] {
            let parsed = text.split(separator: ",").map { PortOutStatus(rawValue: String($0)) }
            if parsed.isEmpty || parsed.contains(where: { $0 == nil || $0!.isTerminal }) {
                issues.append(ValidationIssue(field: "status", message: "must be initiated, processing or issued, comma-separated"))
            } else {
                statuses = Set(parsed.compactMap { $0 })
            }
        }
        let limit = parameters["limit"].map { Int($0) ?? 0 } ?? 100
        if !(1...1000).contains(limit) {
            issues.append(ValidationIssue(field: "limit", message: "must be an integer from 1 to 1000"))
        }
        guard issues.isEmpty else {
            return HTTPResponse(error: .unprocessable(code: "invalidParameters", "The query is invalid.", details: issues))
        }

        let nowMs = WallClock.milliseconds()
        let found = self.stalled.list(olderThanSeconds: olderThan, tenant: parameters["tenant"], statuses: statuses)
        let items: [JSONValue] = found.prefix(limit).map { stalled in
            .object(JSONObject([
                ("object", "stalledPortOut"), ("tenant", .string(stalled.tenant)), ("project", .string(stalled.project)),
                ("id", .string(stalled.id)), ("status", .string(stalled.status.rawValue)),
                ("since", .string(RFC3339.format(epochMilliseconds: stalled.sinceMs))),
                ("ageSeconds", .number(Double((nowMs - stalled.sinceMs) / 1000))),
            ]))
        }
        return HTTPResponse(status: 200, json: [
            "object": "list", "data": .array(items), "total": .number(Double(found.count)),
            "hasMore": .bool(found.count > limit),
        ])
    }
}
