import PortoutCore
import PortoutJournal

/// The latest accepted state of every port out, per tenant and project, for the read API.
///
/// Each entry keeps what listing filters and sorts on, plus where the event that set it sits in the journal;
/// the port-out object itself is read back from there when a request needs it, so an entry costs about
/// 200 bytes however large the events are. Not thread-safe: `PortOutStore` keeps it behind a mutex.
struct PortOutIndex {
    struct Entry {
        var status: PortOutStatus
        var subscription: String
        var createdAtMs: Int64
        var location: JournalLocation
    }

    /// The list order: newest `createdAt` first, ties broken by id so the order is total and stable.
    struct SortKey: Comparable {
        var createdAtMs: Int64
        var id: String

        static func < (lhs: SortKey, rhs: SortKey) -> Bool {
            (lhs.createdAtMs, lhs.id) < (rhs.createdAtMs, rhs.id)
        }
    }

    struct Project {
        var entries: [String: Entry] = [:]
        /// Every port out of the project in ascending `SortKey` order; listing walks it backwards.
        var order: [SortKey] = []
    }

    struct ProjectKey: Hashable {
        var tenant: String
        var project: String
    }

    private(set) var projects: [ProjectKey: Project] = [:]

    var count: Int {
        self.projects.values.reduce(0) { $0 + $1.entries.count }
    }

    /// Records an accepted event's port out unless it would move the port out backwards; `.updated` events
    /// carry the current status, so an equal rank replaces the entry.
    mutating func apply(_ record: EventRecord, at location: JournalLocation) {
        guard !record.isStale, !record.portOutID.isEmpty, let status = record.status else { return }
        let key = ProjectKey(tenant: record.tenant, project: record.project)
        var project = self.projects[key] ?? Project()
        if let existing = project.entries[record.portOutID] {
            guard existing.status.rank <= status.rank else { return }
            project.entries[record.portOutID] = Entry(
                status: status, subscription: record.subscription, createdAtMs: existing.createdAtMs,
                location: location)
        } else {
            project.entries[record.portOutID] = Entry(
                status: status, subscription: record.subscription, createdAtMs: record.portOutCreatedAtMs,
                location: location)
            let sortKey = SortKey(createdAtMs: record.portOutCreatedAtMs, id: record.portOutID)
            if let last = project.order.last, sortKey < last {
                project.order.insert(sortKey, at: Self.insertionIndex(sortKey, in: project.order))
            } else {
                project.order.append(sortKey)
            }
        }
        self.projects[key] = project
    }

    func entry(tenant: String, project: String, id: String) -> Entry? {
        self.projects[ProjectKey(tenant: tenant, project: project)]?.entries[id]
    }

    static func insertionIndex(_ key: SortKey, in order: [SortKey]) -> Int {
        var low = 0
        var high = order.count
        while low < high {
            let middle = (low + high) / 2
            if order[middle] < key {
                low = middle + 1
            } else {
                high = middle
            }
        }
        return low
    }
}
