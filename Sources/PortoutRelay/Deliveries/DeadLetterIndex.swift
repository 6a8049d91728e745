import PortoutCore
import PortoutJournal
import Synchronization

/// A delivery that gave up, with its event and the last attempt's outcome.
struct DeadLetter: Sendable {
    var event: EventSummary
    var destination: String
    var attempts: Int
    var httpStatus: Int?
    var reason: String
    var deadLetteredAtMs: Int64

    init(event: EventSummary, destination: String, attempt: AttemptRecord) {
        self.event = event
        self.destination = destination
        self.attempts = attempt.attempt
        self.httpStatus = attempt.httpStatus
        self.reason = attempt.error
        self.deadLetteredAtMs = attempt.atMs
    }

    /// `dl_<event sequence>_<destination>`, stable across restarts since both parts come from the journal.
    var id: String {
        "dl_\(self.event.sequence)_\(self.destination)"
    }

    var key: DeliveryKey {
        DeliveryKey(sequence: self.event.sequence, destination: self.destination)
    }

    /// Parses an id made by `id`; nil for anything else.
    static func key(fromID id: String) -> DeliveryKey? {
        guard id.hasPrefix("dl_") else { return nil }
        let rest = id.dropFirst(3)
        guard let separator = rest.firstIndex(of: "_"), let sequence = UInt64(rest[..<separator]) else { return nil }
        let destination = String(rest[rest.index(after: separator)...])
        return destination.isEmpty ? nil : DeliveryKey(sequence: sequence, destination: destination)
    }
}

/// One event's delivery to one destination.
struct DeliveryKey: Hashable, Sendable, Comparable {
    var sequence: UInt64
    var destination: String

    static func < (lhs: DeliveryKey, rhs: DeliveryKey) -> Bool {
        (lhs.sequence, lhs.destination) < (rhs.sequence, rhs.destination)
    }
}

/// The dead letters not yet redelivered, rebuilt from the journal at start and kept current as deliveries settle.
///
/// NOTE: every dead letter stays in memory until it is redelivered, about 300 bytes each, so a destination that
/// dead-letters for days at a high rate grows this without bound.
final class DeadLetterIndex: Sendable {
    private let entries = Mutex<[DeliveryKey: DeadLetter]>([:])

    func add(_ deadLetter: DeadLetter) {
        self.entries.withLock { $0[deadLetter.key] = deadLetter }
    }

    func remove(_ key: DeliveryKey) {
        self.entries.withLock { _ = $0.removeValue(forKey: key) }
    }

    /// Forgets dead letters whose event is in a segment before `segment`, which retention removes.
    func forget(before segment: UInt64) -> Int {
        self.entries.withLock { entries in
            let before = entries.count
            entries = entries.filter { $0.value.event.location.segment >= segment }
            return before - entries.count
        }
    }

    var count: Int {
        self.entries.withLock { $0.count }
    }

    /// Returns the dead letters that pass `filter`, in event order.
    func matching(_ filter: DeliveryFilter) -> [DeadLetter] {
        self.entries.withLock { entries in
            entries.values.filter { filter.matches($0.event, destination: $0.destination) }
        }.sorted { $0.key < $1.key }
    }

    /// Returns the dead letters with these keys, in event order; unknown keys are left out.
    func lookup(_ keys: [DeliveryKey]) -> [DeadLetter] {
        self.entries.withLock { entries in
            keys.compactMap { entries[$0] }
        }.sorted { $0.key < $1.key }
    }
}
