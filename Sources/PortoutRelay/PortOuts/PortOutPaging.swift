import PortoutCore

/// Listing of one project's port outs, newest first, shared by the relay's read API and the emulator.
enum PortOutPaging {
    /// The list order: newest `createdAt` first, ties broken by id so the order is total and stable. Stored in
    /// ascending order and walked backwards.
    struct SortKey: Comparable {
        var createdAtMs: Int64
        var id: String

        static func < (lhs: SortKey, rhs: SortKey) -> Bool {
            (lhs.createdAtMs, lhs.id) < (rhs.createdAtMs, rhs.id)
        }
    }

    /// What the filters need to know of one port out.
    struct Summary {
        var status: PortOutStatus
        var subscription: String
        var createdAtMs: Int64
    }

    /// One page of a list request.
    struct Page: Equatable {
        var ids: [String]
        var moreItemsAfter: String?
        var moreItemsBefore: String?
    }

    struct ListQuery {
        var statuses: Set<PortOutStatus>
        var subscription: String?
        var after: String?
        var before: String?
        var limit: Int
    }

    enum ListError: Error, Equatable {
        /// The `after` or `before` id names no port out of the project.
        case unknownCursor(parameter: String, id: String)
    }

    /// Lists port outs newest first.
    ///
    /// `after` continues with the items that follow the given id in that order, `before` with the items just
    /// preceding it. The cursor's own port out need not match the filters, so a page boundary stays put when
    /// the port out there changes status. `moreItemsAfter` is the last item's id when more matching items
    /// follow it, and `moreItemsBefore` the first item's id when more precede it.
    static func page(
        order: SortedChunks<SortKey>, _ query: ListQuery, summary: (String) -> Summary?
    ) -> Result<Page, ListError> {
        func matches(_ position: Int) -> Bool {
            guard let entry = summary(order[position].id) else { return false }
            guard query.statuses.contains(entry.status) else { return false }
            return query.subscription.map { $0 == entry.subscription } ?? true
        }
        func position(of id: String, parameter: String) -> Result<Int, ListError> {
            guard let entry = summary(id) else {
                return .failure(.unknownCursor(parameter: parameter, id: id))
            }
            return .success(order.insertionIndex(of: SortKey(createdAtMs: entry.createdAtMs, id: id)))
        }

        // Positions count down from the newest; a page is collected walking away from the cursor.
        var positions: [Int] = []
        if let before = query.before {
            let start: Int
            switch position(of: before, parameter: "before") {
            case .failure(let error): return .failure(error)
            case .success(let found): start = found + 1
            }
            var index = start
            while index < order.count && positions.count < query.limit {
                if matches(index) { positions.append(index) }
                index += 1
            }
            positions.reverse()
        } else {
            var index = order.count - 1
            if let after = query.after {
                switch position(of: after, parameter: "after") {
                case .failure(let error): return .failure(error)
                case .success(let found): index = found - 1
                }
            }
            while index >= 0 && positions.count < query.limit {
                if matches(index) { positions.append(index) }
                index -= 1
            }
        }
        guard let newest = positions.first, let oldest = positions.last else {
            return .success(Page(ids: [], moreItemsAfter: nil, moreItemsBefore: nil))
        }
        let moreAfter = (0..<oldest).reversed().contains(where: matches)
        let moreBefore = ((newest + 1)..<order.count).contains(where: matches)
        return .success(
            Page(
                ids: positions.map { order[$0].id },
                moreItemsAfter: moreAfter ? order[oldest].id : nil,
                moreItemsBefore: moreBefore ? order[newest].id : nil))
    }
}

extension PortOutIndex {
    func list(tenant: String, project: String, _ query: PortOutPaging.ListQuery)
        -> Result<PortOutPaging.Page, PortOutPaging.ListError>
    {
        let projectIndex = self.projects[ProjectKey(tenant: tenant, project: project)] ?? Project()
        return PortOutPaging.page(order: projectIndex.order, query) { id in
            projectIndex.entries[id].map {
                PortOutPaging.Summary(status: $0.status, subscription: $0.subscription, createdAtMs: $0.createdAtMs)
            }
        }
    }
}
