import PortoutDelivery
import PortoutJournal

/// Deliveries that the journal shows as not yet settled, gathered while it is replayed at start-up.
struct UnsettledDeliveries {
    /// One destination's unsettled delivery of an event.
    private struct Progress {
        var destination: String
        var attempts = 0
        var nextAttemptAtMs: Int64 = 0
        /// The replay that queued it, if any.
        var replayID: String?
        /// When it became due first, which its maximum age counts from.
        var sinceMs: Int64
    }

    private struct Entry {
        var event: EventSummary
        /// An event has a handful of destinations at most, so a list searched in order serves. A dictionary per
        /// event, as before, made a start with 200,000 deliveries to restore take about 1.26 s instead of 0.99 s.
        var remaining: [Progress]

        func index(of destination: String) -> Int? {
            self.remaining.firstIndex { $0.destination == destination }
        }
    }

    private var entries: [UInt64: Entry] = [:]
    /// How many deliveries the entries hold, so that `pendingDeliveries` allocates its result once.
    private var count = 0
    /// Per replay id, the deliveries it queued that settled, as the journal's attempt records show them.
    private(set) var replayTallies: [String: ReplayTally] = [:]

    mutating func add(_ event: EventRecord, at location: JournalLocation) {
        guard !event.destinations.isEmpty else { return }
        let remaining = event.destinations.map { Progress(destination: $0, sinceMs: event.acceptedAtMs) }
        self.count += remaining.count
        if let replaced = self.entries.updateValue(
            Entry(event: EventSummary(event, location: location), remaining: remaining), forKey: event.sequence)
        {
            self.count -= replaced.remaining.count
        }
    }

    /// Makes a replayed delivery unsettled again, with no attempts made. A delivery still unsettled is left as it
    /// is, with its owner: a replay journals every match before the engine counts those already pending, and the
    /// engine leaves those with the delivery or replay that queued them. If the owner settled in between, the
    /// engine queued the copy and journaled its record again after the owner's outcome, which reopens it here.
    mutating func reopen(_ replay: ReplayRecord) {
        var entry = self.entries[replay.event.sequence] ?? Entry(event: replay.event, remaining: [])
        guard entry.index(of: replay.destination) == nil else { return }
        entry.remaining.append(
            Progress(destination: replay.destination, replayID: replay.replayID, sinceMs: replay.atMs))
        self.count += 1
        self.entries[replay.event.sequence] = entry
    }

    /// Applies an attempt's outcome; returns the dead letter it made, if it dead-lettered its delivery.
    mutating func apply(_ attempt: AttemptRecord) -> DeadLetter? {
        guard let found = self.entries.index(forKey: attempt.eventSequence),
            let position = self.entries.values[found].index(of: attempt.destination)
        else {
            return nil
        }
        guard attempt.outcome.isFinal else {
            self.entries.values[found].remaining[position].attempts = attempt.attempt
            self.entries.values[found].remaining[position].nextAttemptAtMs = attempt.nextAttemptAtMs ?? 0
            return nil
        }
        let progress = self.entries.values[found].remaining.remove(at: position)
        self.count -= 1
        if let replayID = progress.replayID {
            self.replayTallies[replayID, default: ReplayTally()].count(attempt.outcome)
        }
        let event = self.entries.values[found].event
        if self.entries.values[found].remaining.isEmpty {
            self.entries.remove(at: found)
        }
        guard attempt.outcome == .deadLettered else { return nil }
        return DeadLetter(event: event, destination: attempt.destination, attempt: attempt)
    }

    /// Returns the unsettled deliveries in acceptance order, which keeps each port out's statuses in order, and
    /// each event's in the order of its destinations' ids.
    func pendingDeliveries() -> [PendingDelivery] {
        var pending: [PendingDelivery] = []
        pending.reserveCapacity(self.count)
        for sequence in self.entries.keys.sorted() {
            let entry = self.entries[sequence]!
            let remaining = entry.remaining.count == 1
                ? entry.remaining : entry.remaining.sorted { $0.destination < $1.destination }
            for progress in remaining {
                pending.append(PendingDelivery(
                    event: entry.event, destination: progress.destination, attempts: progress.attempts,
                    nextAttemptAtMs: progress.nextAttemptAtMs, replayID: progress.replayID, sinceMs: progress.sinceMs))
            }
        }
        return pending
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
