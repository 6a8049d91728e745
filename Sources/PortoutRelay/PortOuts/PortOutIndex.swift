import PortoutCore
import PortoutJournal

/// The latest accepted state of every port out, per tenant and project, for the read API.
///
/// Each entry keeps what listing filters and sorts on, plus the journal location of the event that set it.
/// The port-out object itself is read back from there when a request needs it, so an entry's size does not
/// grow with the events. Not thread-safe: `PortOutStore` keeps it behind a mutex.
struct PortOutIndex {
    struct Entry {
        var status: PortOutStatus
        var subscription: String
        var createdAtMs: Int64
        var location: JournalLocation
    }

    struct Project {
        var entries: [String: Entry] = [:]
        /// Every port out of the project in ascending `SortKey` order; listing walks it backwards.
        var order: [PortOutPaging.SortKey] = []
    }

    struct ProjectKey: Hashable {
        var tenant: String
        var project: String
    }

    private(set) var projects: [ProjectKey: Project] = [:]

    var count: Int {
        self.projects.values.reduce(0) { $0 + $1.entries.count }
    }

    /// Records an accepted event's port out unless it would move the port out backwards. `.updated` events
    /// carry the current status, so an equal rank replaces the entry.
    mutating func apply(_ record: EventRecord, at location: JournalLocation) {
        guard !record.isStale, !record.portOutID.isEmpty, let status = record.status else { return }
        let key = ProjectKey(tenant: record.tenant, project: record.project)
        // Mutated in place through the default subscript: copying a project out and back would copy its
        // whole dictionary and order on every event.
        Self.apply(record, status: status, at: location, to: &self.projects[key, default: Project()])
    }

    private static func apply(
        _ record: EventRecord, status: PortOutStatus, at location: JournalLocation, to project: inout Project
    ) {
        if let existing = project.entries[record.portOutID] {
            guard existing.status.rank <= status.rank else { return }
            project.entries[record.portOutID] = Entry(
                status: status, subscription: record.subscription, createdAtMs: existing.createdAtMs,
                location: location)
            return
        }
        project.entries[record.portOutID] = Entry(
            status: status, subscription: record.subscription, createdAtMs: record.portOutCreatedAtMs,
            location: location)
        PortOutPaging.insert(
            PortOutPaging.SortKey(createdAtMs: record.portOutCreatedAtMs, id: record.portOutID), into: &project.order)
    }

    func entry(tenant: String, project: String, id: String) -> Entry? {
        self.projects[ProjectKey(tenant: tenant, project: project)]?.entries[id]
    }
}
