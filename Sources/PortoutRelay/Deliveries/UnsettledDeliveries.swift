import PortoutDelivery
import PortoutJournal

/// Deliveries that the journal shows as not yet settled, gathered while it is replayed at start-up.
struct UnsettledDeliveries {
    private struct Entry {
        var event: EventSummary
        /// Per destination: attempts made, when the next is due, the replay that queued it, if any, and when it
        /// became due first, which its maximum age counts from.
        var remaining: [String: (attempts: Int, nextAttemptAtMs: Int64, replayID: String?, sinceMs: Int64)]
    }

    private var entries: [UInt64: Entry] = [:]
    /// Per replay id, the deliveries it queued that settled, as the journal's attempt records show them.
    private(set) var replayTallies: [String: ReplayTally] = [:]

    mutating func add(_ event: EventRecord, at location: JournalLocation) {
        guard !event.destinations.isEmpty else { return }
        var remaining: [String: (attempts: Int, nextAttemptAtMs: Int64, replayID: String?, sinceMs: Int64)] = [:]
        for destination in event.destinations {
            remaining[destination] = (0, 0, nil, event.acceptedAtMs)
        }
        self.entries[event.sequence] = Entry(event: EventSummary(event, location: location), remaining: remaining)
    }

    /// Makes a replayed delivery unsettled again, with no attempts made. A delivery still unsettled is left as it
    /// is, with its owner: a replay journals every match before the engine counts those already pending, and the
    /// engine leaves those with the delivery or replay that queued them. If the owner settled in between, the
    /// engine queued the copy and journaled its record again after the owner's outcome, which reopens it here.
    mutating func reopen(_ replay: ReplayRecord) {
        var entry = self.entries[replay.event.sequence] ?? Entry(event: replay.event, remaining: [:])
        guard entry.remaining[replay.destination] == nil else { return }
        entry.remaining[replay.destination] = (0, 0, replay.replayID, replay.atMs)
        self.entries[replay.event.sequence] = entry
    }

    /// Applies an attempt's outcome; returns the dead letter it made, if it dead-lettered its delivery.
    mutating func apply(_ attempt: AttemptRecord) -> DeadLetter? {
        guard var entry = self.entries[attempt.eventSequence], let progress = entry.remaining[attempt.destination] else {
            return nil
        }
        var deadLetter: DeadLetter?
        if attempt.outcome.isFinal {
            entry.remaining.removeValue(forKey: attempt.destination)
            if let replayID = progress.replayID {
                self.replayTallies[replayID, default: ReplayTally()].count(attempt.outcome)
            }
            if attempt.outcome == .deadLettered {
                deadLetter = DeadLetter(event: entry.event, destination: attempt.destination, attempt: attempt)
            }
        } else {
            entry.remaining[attempt.destination] = (
                attempt.attempt, attempt.nextAttemptAtMs ?? 0, progress.replayID, progress.sinceMs
            )
        }
        self.entries[attempt.eventSequence] = entry.remaining.isEmpty ? nil : entry
        return deadLetter
    }

    /// Returns the unsettled deliveries in acceptance order, which keeps each port out's statuses in order.
    func pendingDeliveries() -> [PendingDelivery] {
        self.entries.keys.sorted().flatMap { sequence -> [PendingDelivery] in
            let entry = self.entries[sequence]!
            return entry.remaining.keys.sorted().map { destination in
                let progress = entry.remaining[destination]!
                return PendingDelivery(
                    event: entry.event, destination: destination, attempts: progress.attempts,
                    nextAttemptAtMs: progress.nextAttemptAtMs, replayID: progress.replayID, sinceMs: progress.sinceMs)
            }
        }
    }
}

extension PendingDelivery {
    /// Creates the delivery of a journaled event; `sinceMs`, for a replayed one, is when the replay queued it.
    init(
        event: EventSummary, destination: String, attempts: Int = 0, nextAttemptAtMs: Int64 = 0,
        replayID: String? = nil, sinceMs: Int64? = nil
    ) {
        self.init(
            sequence: event.sequence, eventID: event.eventID, tenant: event.tenant, destination: destination,
            orderingKey: event.orderingKey, location: event.location, acceptedAtMs: sinceMs ?? event.acceptedAtMs,
            attempts: attempts, nextAttemptAtMs: nextAttemptAtMs, replayID: replayID)
    }
}
