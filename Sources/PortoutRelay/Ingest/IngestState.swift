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

    /// A port out's furthest status and the project it was accepted under, in the 8 bytes an `Int` would take.
    struct LifecycleEntry: Sendable, Equatable {
        var rank: Int32
        var projectTag: UInt32

        init(rank: Int, projectTag: UInt32) {
            self.rank = Int32(rank)
            self.projectTag = projectTag
        }
    }

    /// The outcome of the dedupe and lifecycle checks for one event.
    enum Decision: Equatable {
        /// Already journaled, so the response is 200.
        case duplicate(stale: Bool)
        /// An identical event is being written now, so the response waits until that write settles.
        case twinInFlight(stale: Bool)
        /// New: journal it under this sequence number. `previous` restores the lifecycle if the write fails.
        case accept(sequence: UInt64, stale: Bool, previous: LifecycleEntry?)
        /// The port out was accepted under another of the tenant's projects, so the event is rejected.
        case otherProject
    }

    private(set) var dedupe: ShardedLRUIndex<DigestKey, DedupeEntry>
    /// The highest lifecycle rank accepted per port out, keyed by (tenant, port out).
    private(set) var lifecycle: ShardedLRUIndex<DigestKey, LifecycleEntry>
    private(set) var nextSequence: UInt64 = 1
    private var twinWaiters: [DigestKey: [@Sendable (Bool) -> Void]] = [:]

    init(capacity: Int) {
        self.dedupe = ShardedLRUIndex(capacity: capacity)
        self.lifecycle = ShardedLRUIndex(capacity: capacity)
    }

    mutating func reserveCapacity(_ count: Int) {
        self.dedupe.reserveCapacity(count)
        self.lifecycle.reserveCapacity(count)
    }

    /// Checks an event and, if it is new, reserves its key and sequence number. A resend under another project
    /// is still a duplicate, since it changes nothing. Only a new status is rejected there.
    mutating func admit(dedupeKey: DigestKey, lifecycleKey: DigestKey?, status: PortOutStatus?, project: String) -> Decision {
        if let entry = self.dedupe.lookup(dedupeKey) {
            return entry.isDurable ? .duplicate(stale: entry.isStale) : .twinInFlight(stale: entry.isStale)
        }
        var stale = false
        var previous: LifecycleEntry?
        if let lifecycleKey, let status {
            let projectTag = Self.projectTag(project)
            previous = self.lifecycle.peek(lifecycleKey)
            if let previous, previous.projectTag != projectTag {
                return .otherProject
            }
            if let previous, previous.rank >= status.rank {
                stale = true
            } else {
                _ = self.lifecycle.insert(lifecycleKey, LifecycleEntry(rank: status.rank, projectTag: projectTag))
            }
        }
        _ = self.dedupe.insert(dedupeKey, DedupeEntry(isDurable: false, isStale: stale))
        let sequence = self.nextSequence
        self.nextSequence += 1
        return .accept(sequence: sequence, stale: stale, previous: previous)
    }

    /// A 32-bit FNV-1a hash of the project name, which stays the same across restarts as Swift's `Hasher` does
    /// not. Two of a tenant's projects with the same tag are not distinguished, so a port out could then be
    /// filed under both. With 32 bits and a handful of projects a tenant, that is left as it is.
    static func projectTag(_ project: String) -> UInt32 {
        var hash: UInt32 = 2_166_136_261
        for byte in project.utf8 {
            hash = (hash ^ UInt32(byte)) &* 16_777_619
        }
        return hash
    }

    /// Registers a function to run with the outcome of the in-flight write of an identical event.
    mutating func waitForTwin(_ dedupeKey: DigestKey, _ waiter: @escaping @Sendable (Bool) -> Void) {
        self.twinWaiters[dedupeKey, default: []].append(waiter)
    }

    /// Marks an event durable and returns the waiters of its twins, which the caller calls with `true`.
    mutating func confirm(_ dedupeKey: DigestKey) -> [@Sendable (Bool) -> Void] {
        if var entry = self.dedupe.peek(dedupeKey) {
            entry.isDurable = true
            _ = self.dedupe.update(dedupeKey, entry)
        }
        return self.twinWaiters.removeValue(forKey: dedupeKey) ?? []
    }

    /// Removes an event whose write failed, so that the sender's retry is treated as new. Returns the waiters of
    /// its twins, which the caller calls with `false`.
    mutating func abandon(
        _ dedupeKey: DigestKey, lifecycleKey: DigestKey?, status: PortOutStatus?, previous: LifecycleEntry?, stale: Bool
    ) -> [@Sendable (Bool) -> Void] {
        _ = self.dedupe.remove(dedupeKey)
        if let lifecycleKey, let status, !stale, self.lifecycle.peek(lifecycleKey)?.rank == Int32(status.rank) {
            if let previous {
                _ = self.lifecycle.update(lifecycleKey, previous)
            } else {
                _ = self.lifecycle.remove(lifecycleKey)
            }
        }
        return self.twinWaiters.removeValue(forKey: dedupeKey) ?? []
    }

    /// Replays one journaled event at start-up.
    mutating func restore(_ record: EventRecord) {
        _ = self.dedupe.insert(record.dedupeKey, DedupeEntry(isDurable: true, isStale: record.isStale))
        if let status = record.status, let key = record.lifecycleKey {
            if (self.lifecycle.peek(key)?.rank ?? -1) < Int32(status.rank) {
                _ = self.lifecycle.insert(key, LifecycleEntry(rank: status.rank, projectTag: Self.projectTag(record.project)))
            }
        }
        self.nextSequence = max(self.nextSequence, record.sequence + 1)
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
