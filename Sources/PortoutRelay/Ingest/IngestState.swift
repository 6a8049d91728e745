import PortoutCore
import PortoutCrypto
import PortoutJournal

/// Dedupe keys, each port out's furthest status and the event sequence counter: the state every accepted event
/// is checked against.
///
/// Not thread-safe: `Ingestor` keeps it behind a mutex, and the journal appends that follow a decision happen
/// under the same lock so that sequence numbers reach the journal in order.
struct IngestState: Sendable {
    struct DedupeEntry: Sendable {
        /// False while the event's journal write is in flight.
        var isDurable: Bool
        var isStale: Bool
    }

    /// A port out's furthest status, the furthest whose write is durable, the ranks whose writes are in flight,
    /// and the project it was accepted under, in the 8 bytes an `Int` would take.
    struct LifecycleEntry: Sendable, Equatable {
        var rank: Int8
        /// The furthest rank whose write is durable, or -1 while none is.
        var durableRank: Int8
        /// Bit r is set while a write of rank r is in flight. While one is, a status of the same rank is stale or
        /// waits, so one bit a rank is enough.
        var inFlightRanks: UInt8 = 0
        /// Whether a durable write, of a status or of a `.updated` event, was accepted under `projectTag`. Until
        /// one is, the project is only that of writes in flight, and goes with the last of them if they fail.
        var isProjectDurable = false
        var projectTag: UInt32

        init(rank: Int, durableRank: Int, projectTag: UInt32) {
            self.rank = Int8(rank)
            self.durableRank = Int8(durableRank)
            self.projectTag = projectTag
        }

        /// Whether nothing durable or in flight backs the entry: no status, and no durable project.
        var isUnused: Bool {
            self.rank < 0 && self.inFlightRanks == 0 && !self.isProjectDurable
        }

        /// The rank the durable writes and those still in flight make, or -1 if there is none.
        var settledRank: Int8 {
            max(self.durableRank, self.inFlightRanks == 0 ? -1 : Int8(7 - self.inFlightRanks.leadingZeroBitCount))
        }
    }

    /// The outcome of the dedupe and lifecycle checks for one event.
    enum Decision: Equatable {
        /// Already journaled, so the response is 200.
        case duplicate(stale: Bool)
        /// An identical event is being written now, so the response waits until that write settles.
        case twinInFlight(stale: Bool)
        /// New: journal it under this sequence number.
        case accept(sequence: UInt64, stale: Bool)
        /// The port out was accepted under another of the tenant's projects, so the event is rejected.
        case otherProject
        /// The event would be stale only because of a status write still in flight, which may fail. The caller
        /// registers with `waitForWrites` and admits the event again once the port out's writes have settled.
        case writesInFlight
    }

    /// The functions to call once a write has settled: the twins' waiters with the outcome, and the events that
    /// waited for the port out's writes, which are admitted again.
    struct Waiters {
        var twins: [@Sendable (Bool) -> Void] = []
        var lifecycle: [@Sendable () -> Void] = []
    }

    private(set) var dedupe: ShardedLRUIndex<DigestKey, DedupeEntry>
    /// The highest lifecycle rank accepted per port out, keyed by (tenant, port out).
    private(set) var lifecycle: ShardedLRUIndex<DigestKey, LifecycleEntry>
    private(set) var nextSequence: UInt64 = 1
    private var twinWaiters: [DigestKey: [@Sendable (Bool) -> Void]] = [:]

    /// Events waiting for a port out's status writes in flight to settle, by lifecycle key. Empty unless an event
    /// waits.
    private var lifecycleWaiters: [DigestKey: [@Sendable () -> Void]] = [:]

    init(capacity: Int) {
        self.dedupe = ShardedLRUIndex(capacity: capacity)
        self.lifecycle = ShardedLRUIndex(capacity: capacity)
    }

    mutating func reserveCapacity(_ count: Int) {
        self.dedupe.reserveCapacity(count)
        self.lifecycle.reserveCapacity(count)
    }

    /// Checks an event and, if it is new, reserves its key and sequence number. A resend under another project
    /// is still a duplicate, since it changes nothing. A new status is rejected there, and so is an event that
    /// carries the port out without a status change, checked by `projectCheckKey`.
    mutating func admit(
        dedupeKey: DigestKey, lifecycleKey: DigestKey?, status: PortOutStatus?, project: String,
        projectCheckKey: DigestKey? = nil
    ) -> Decision {
        if let entry = self.dedupe.lookup(dedupeKey) {
            return entry.isDurable ? .duplicate(stale: entry.isStale) : .twinInFlight(stale: entry.isStale)
        }
        if let projectCheckKey {
            if let entry = self.lifecycle.peek(projectCheckKey) {
                guard entry.projectTag == Self.projectTag(project) else { return .otherProject }
            } else {
                self.recordProject(projectCheckKey, project)
            }
        }
        var stale = false
        if let lifecycleKey, let status {
            let projectTag = Self.projectTag(project)
            let previous = self.lifecycle.peek(lifecycleKey)
            if let previous, previous.projectTag != projectTag {
                return .otherProject
            }
            if let previous, previous.rank >= status.rank {
                if previous.inFlightRanks != 0 && previous.durableRank < status.rank {
                    return .writesInFlight
                }
                stale = true
            } else {
                var entry = previous ?? LifecycleEntry(rank: status.rank, durableRank: -1, projectTag: projectTag)
                entry.rank = Int8(status.rank)
                entry.inFlightRanks |= 1 << UInt8(status.rank)
                _ = self.lifecycle.insert(lifecycleKey, entry)
            }
        }
        _ = self.dedupe.insert(dedupeKey, DedupeEntry(isDurable: false, isStale: stale))
        let sequence = self.nextSequence
        self.nextSequence += 1
        return .accept(sequence: sequence, stale: stale)
    }

    /// Records the project of a port out that has no status yet, with rank -1, so that a first status under another
    /// project is rejected as it would be after one. `confirm` marks it durable, and `abandon` removes it if
    /// nothing else backs it.
    private mutating func recordProject(_ lifecycleKey: DigestKey, _ project: String, isDurable: Bool = false) {
        var entry = LifecycleEntry(rank: -1, durableRank: -1, projectTag: Self.projectTag(project))
        entry.isProjectDurable = isDurable
        _ = self.lifecycle.insert(lifecycleKey, entry)
    }

    /// Returns a 32-bit FNV-1a hash of the project name, which stays the same across restarts as Swift's `Hasher`
    /// does not. Two of a tenant's projects with the same tag are not distinguished, so a port out could then be
    /// filed under both. With 32 bits and a handful of projects a tenant, that is left as it is.
    static func projectTag(_ project: String) -> UInt32 {
        FNV1a.hash32(project)
    }

    /// Registers a function to run once the port out's status writes in flight have all settled. The caller
    /// gets it back from the `confirm` or `abandon` of the last of them.
    mutating func waitForWrites(_ lifecycleKey: DigestKey, _ waiter: @escaping @Sendable () -> Void) {
        self.lifecycleWaiters[lifecycleKey, default: []].append(waiter)
    }

    /// Registers a function to run with the outcome of the in-flight write of an identical event.
    mutating func waitForTwin(_ dedupeKey: DigestKey, _ waiter: @escaping @Sendable (Bool) -> Void) {
        self.twinWaiters[dedupeKey, default: []].append(waiter)
    }

    /// Marks an event durable and returns the waiters: those of its twins, which the caller calls with `true`, and
    /// the events to admit again if no write of the port out is left in flight.
    mutating func confirm(
        _ dedupeKey: DigestKey, lifecycleKey: DigestKey?, status: PortOutStatus?, stale: Bool,
        projectCheckKey: DigestKey? = nil, project: String = ""
    ) -> Waiters {
        if var entry = self.dedupe.peek(dedupeKey) {
            entry.isDurable = true
            _ = self.dedupe.update(dedupeKey, entry)
        }
        var waiters = Waiters(twins: self.twinWaiters.removeValue(forKey: dedupeKey) ?? [])
        if let lifecycleKey, let status, !stale {
            waiters.lifecycle = self.settleWrite(lifecycleKey, rank: status.rank) { entry in
                entry.durableRank = max(entry.durableRank, Int8(status.rank))
                entry.isProjectDurable = true
            }
        }
        if let projectCheckKey {
            // Recorded again if a failed status write removed the entry meanwhile.
            var entry = self.lifecycle.peek(projectCheckKey)
                ?? LifecycleEntry(rank: -1, durableRank: -1, projectTag: Self.projectTag(project))
            entry.isProjectDurable = true
            _ = self.lifecycle.insert(projectCheckKey, entry)
        }
        return waiters
    }

    /// Removes an event whose write failed, so that the sender's retry is treated as new, and puts the port out's
    /// rank back to what its other writes make. Returns the waiters: those of its twins, which the caller calls
    /// with `false`, and the events to admit again if no write of the port out is left in flight.
    mutating func abandon(
        _ dedupeKey: DigestKey, lifecycleKey: DigestKey?, status: PortOutStatus?, stale: Bool,
        projectCheckKey: DigestKey? = nil
    ) -> Waiters {
        _ = self.dedupe.remove(dedupeKey)
        var waiters = Waiters(twins: self.twinWaiters.removeValue(forKey: dedupeKey) ?? [])
        if let lifecycleKey, let status, !stale {
            waiters.lifecycle = self.settleWrite(lifecycleKey, rank: status.rank) { entry in
                entry.rank = entry.settledRank
            }
        }
        if let projectCheckKey, let entry = self.lifecycle.peek(projectCheckKey), entry.isUnused {
            _ = self.lifecycle.remove(projectCheckKey)
        }
        return waiters
    }

    /// Clears the in-flight bit of `rank` in the port out's entry and runs `update` on the entry. An entry left
    /// with rank -1 and nothing durable or in flight is removed, so that a failed write fixes no project. One
    /// whose project a durable `.updated` event recorded stays. Returns the events that waited for the port
    /// out's writes once none is in flight, or once the entry is gone, such as evicted by the LRU.
    private mutating func settleWrite(
        _ lifecycleKey: DigestKey, rank: Int, update: (inout LifecycleEntry) -> Void
    ) -> [@Sendable () -> Void] {
        var isSettled = true
        if var entry = self.lifecycle.peek(lifecycleKey) {
            entry.inFlightRanks &= ~(1 << UInt8(rank))
            update(&entry)
            if entry.isUnused {
                _ = self.lifecycle.remove(lifecycleKey)
            } else {
                _ = self.lifecycle.update(lifecycleKey, entry)
                isSettled = entry.inFlightRanks == 0
            }
        }
        guard isSettled, !self.lifecycleWaiters.isEmpty else { return [] }
        return self.lifecycleWaiters.removeValue(forKey: lifecycleKey) ?? []
    }

    /// Replays one journaled event at start-up.
    mutating func restore(_ record: EventRecord) {
        _ = self.dedupe.insert(record.dedupeKey, DedupeEntry(isDurable: true, isStale: record.isStale))
        if let status = record.status, let key = record.lifecycleKey {
            var entry = LifecycleEntry(rank: status.rank, durableRank: status.rank, projectTag: Self.projectTag(record.project))
            entry.isProjectDurable = true
            _ = self.lifecycle.insert(key, entry) { $0.rank < entry.rank }
        } else if record.lifecycleKey == nil && !record.portOutID.isEmpty {
            // An event that carries the port out without a status change. Its key is not journaled, so it is
            // hashed here; such events are rare next to status changes.
            let key = IngestKeys.lifecycle(tenant: record.tenant, portOutID: record.portOutID)
            if self.lifecycle.peek(key) == nil {
                self.recordProject(key, record.project, isDurable: true)
            }
        }
        self.reserveSequences(through: record.sequence)
    }

    /// Keeps new events from taking `sequence` or any lower number. Recovery calls it for the sequences that
    /// attempt and replay records name too, since their event's own record may be damaged and skipped, and a new
    /// event under the same number would make the journal's later records ambiguous.
    mutating func reserveSequences(through sequence: UInt64) {
        self.nextSequence = max(self.nextSequence, sequence + 1)
    }
}

/// The digests that stand in for dedupe and lifecycle keys.
public enum IngestKeys {
    /// (tenant, port out, status) for status changes.
    public static func dedupe(
        tenant: String, portOutID: String, status: PortOutStatus, hasher: SHA256Hasher = SHA256Hasher()
    ) -> DigestKey {
        self.digest(["status", tenant, portOutID, status.rawValue], hasher)
    }

    /// (tenant, event id) for events without a status.
    public static func dedupe(tenant: String, eventID: String, hasher: SHA256Hasher = SHA256Hasher()) -> DigestKey {
        self.digest(["event", tenant, eventID], hasher)
    }

    public static func lifecycle(tenant: String, portOutID: String, hasher: SHA256Hasher = SHA256Hasher()) -> DigestKey {
        self.digest(["portOut", tenant, portOutID], hasher)
    }

    /// SHA-256 over the parts joined by NUL, which none of them may contain (ids and names are validated text).
    private static func digest(_ parts: [String], _ hasher: SHA256Hasher) -> DigestKey {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(parts.reduce(parts.count) { $0 + $1.utf8.count })
        for (index, part) in parts.enumerated() {
            if index > 0 {
                bytes.append(0)
            }
            bytes.append(contentsOf: part.utf8)
        }
        return DigestKey(digestPrefix: hasher.hash(bytes))
    }
}
