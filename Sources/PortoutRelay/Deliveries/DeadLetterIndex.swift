import PortoutCore
import PortoutDelivery
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

/// The dead letters not yet redelivered, rebuilt from the journal at start and kept current as deliveries settle.
///
/// NOTE: every dead letter stays in memory until it is redelivered, about 300 bytes each, so a destination that
/// dead-letters for days at a high rate grows this without bound.
final class DeadLetterIndex: Sendable {
    private struct Lists {
        var listed: [DeliveryKey: DeadLetter] = [:]
        /// Dead letters queued again by a replay, off the list until that delivery settles: back on it if the
        /// replay is cancelled before sending it, gone if it is delivered or dead-letters anew.
        var suspended: [DeliveryKey: DeadLetter] = [:]
    }

    private let lists = Locked<Lists>(Lists())

    func add(_ deadLetter: DeadLetter) {
        self.lists.withLock { lists in
            lists.suspended.removeValue(forKey: deadLetter.key)
            lists.listed[deadLetter.key] = deadLetter
        }
    }

    /// Takes a dead letter off the list while a replay sends it again.
    func suspend(_ key: DeliveryKey) {
        self.lists.withLock { lists in
            if let deadLetter = lists.listed.removeValue(forKey: key) {
                lists.suspended[key] = deadLetter
            }
        }
    }

    /// Applies how a replayed delivery settled: withdrawn puts its dead letter back on the list, delivered
    /// drops it. A new dead letter arrives through `add`.
    func replaySettled(_ key: DeliveryKey, outcome: AttemptOutcome) {
        self.lists.withLock { lists in
            switch outcome {
            case .cancelled:
                if let deadLetter = lists.suspended.removeValue(forKey: key) {
                    lists.listed[key] = deadLetter
                }
            case .delivered:
                lists.suspended.removeValue(forKey: key)
            case .deadLettered, .retryScheduled:
                break
            }
        }
    }

    /// Forgets dead letters whose event is in a segment before `segment`, which retention removes.
    func forget(before segment: UInt64) -> Int {
        self.lists.withLock { lists in
            let before = lists.listed.count
            lists.listed = lists.listed.filter { $0.value.event.location.segment >= segment }
            lists.suspended = lists.suspended.filter { $0.value.event.location.segment >= segment }
            return before - lists.listed.count
        }
    }

    var count: Int {
        self.lists.withLock { $0.listed.count }
    }

    /// Returns the dead letters that pass `filter`, in event order.
    func matching(_ filter: DeliveryFilter) -> [DeadLetter] {
        self.lists.withLock { lists in
            lists.listed.values.filter { filter.matches($0.event, destination: $0.destination) }
        }.sorted { $0.key < $1.key }
    }

    /// Returns the dead letters with these keys, once each and in event order; unknown keys are left out.
    func lookup(_ keys: [DeliveryKey]) -> [DeadLetter] {
        self.lists.withLock { lists in
            Set(keys).compactMap { lists.listed[$0] }
        }.sorted { $0.key < $1.key }
    }
}
