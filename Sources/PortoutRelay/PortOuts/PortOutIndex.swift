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
        /// When the relay accepted the event that moved the port out to `status`, for finding stalls.
        var statusSinceMs: Int64
    }

    struct Project {
        /// Sharded, so that adding the port out that fills a table does not stall ingest while it grows.
        var entries = ShardedDictionary<String, Entry>()
        /// Every port out of the project in ascending `SortKey` order; listing walks it backwards.
        var order = SortedChunks<PortOutPaging.SortKey>()
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
        // Mutated in place through the index: copying a project out and back would copy its whole dictionary
        // and order on every event.
        Self.apply(record, status: status, at: location, to: &self.projects.values[self.projectIndex(for: record)])
    }

    /// The project the last event went to and its place in `projects`, which stays valid until a project is
    /// added or removed. With one project, as in the benchmarks, every event after the first finds it here.
    /// Hashing the two names had taken a fifth of the instructions of applying an event at start-up.
    private var lastProject: (key: ProjectKey, index: Dictionary<ProjectKey, Project>.Index)?

    /// Finds the event's project in `projects`, adding it if it is new.
    private mutating func projectIndex(for record: EventRecord) -> Dictionary<ProjectKey, Project>.Index {
        if let last = self.lastProject, last.key.tenant == record.tenant, last.key.project == record.project {
            return last.index
        }
        let key = ProjectKey(tenant: record.tenant, project: record.project)
        if self.projects[key] == nil {
            self.projects[key] = Project()
        }
        let index = self.projects.index(forKey: key)!
        self.lastProject = (key, index)
        return index
    }

    private static func apply(
        _ record: EventRecord, status: PortOutStatus, at location: JournalLocation, to project: inout Project
    ) {
        // The closure takes the fields it needs rather than the record, because capturing the record copied it,
        // with a retain of each of its strings, on every event replayed at start-up.
        let subscription = record.subscription
        let createdAtMs = record.portOutCreatedAtMs
        let acceptedAtMs = record.acceptedAtMs
        // Read and written through one slot, so a port out already known costs one hash lookup rather than two.
        let isNew = project.entries.withValue(forKey: record.portOutID) { slot -> Bool in
            guard let existing = slot else {
                slot = Entry(
                    status: status, subscription: subscription, createdAtMs: createdAtMs, location: location,
                    statusSinceMs: acceptedAtMs)
                return true
            }
            guard existing.status.rank <= status.rank else { return false }
            // An `.updated` event with the same status changes the object, not how long it has been waiting.
            let since = existing.status == status ? existing.statusSinceMs : acceptedAtMs
            slot = Entry(
                status: status, subscription: subscription, createdAtMs: existing.createdAtMs, location: location,
                statusSinceMs: since)
            return false
        }
        guard isNew else { return }
        project.order.insert(PortOutPaging.SortKey(createdAtMs: createdAtMs, id: record.portOutID))
    }

    /// A port out waiting in a non-terminal status for longer than its threshold.
    struct Stalled: Sendable {
        var tenant: String
        var project: String
        var id: String
        var status: PortOutStatus
        var sinceMs: Int64
    }

    /// Returns the port outs whose non-terminal status is older than its threshold in `thresholdsMs`, oldest
    /// first. Scans every port out.
    func stalled(nowMs: Int64, thresholdsMs: [PortOutStatus: Int64], tenant: String?) -> [Stalled] {
        var found: [Stalled] = []
        for (key, project) in self.projects where tenant == nil || key.tenant == tenant {
            for (id, entry) in project.entries.elements {
                guard let threshold = thresholdsMs[entry.status], nowMs - entry.statusSinceMs > threshold else { continue }
                found.append(Stalled(tenant: key.tenant, project: key.project, id: id, status: entry.status, sinceMs: entry.statusSinceMs))
            }
        }
        return found.sorted { ($0.sinceMs, $0.id) < ($1.sinceMs, $1.id) }
    }

    /// Forgets the port outs whose latest event is in a segment before `segment`, which retention removes.
    /// Returns how many were forgotten.
    mutating func forget(before segment: UInt64) -> Int {
        self.lastProject = nil
        var forgotten = 0
        for key in Array(self.projects.keys) {
            var project = self.projects[key]!
            let removed = Set(project.entries.elements.filter { $0.value.location.segment < segment }.map(\.key))
            guard !removed.isEmpty else { continue }
            for id in removed {
                project.entries.removeValue(forKey: id)
            }
            project.order.removeAll { removed.contains($0.id) }
            forgotten += removed.count
            self.projects[key] = project.entries.isEmpty ? nil : project
        }
        return forgotten
    }

    /// Builds the index from the journal on the recovery lane, off the thread that rebuilds dedupe state.
    /// `@unchecked Sendable` because only the lane's thread touches `index` until `Journal.open` returns, and
    /// the lane is done by then.
    final class RecoveryBuilder: RecoveryLane, @unchecked Sendable {
        private(set) var index = PortOutIndex()

        func visit(_ event: EventRecord, at location: JournalLocation) {
            self.index.apply(event, at: location)
        }
    }

    func entry(tenant: String, project: String, id: String) -> Entry? {
        self.projects[ProjectKey(tenant: tenant, project: project)]?.entries[id]
    }
}
