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

    /// An event's unsettled deliveries, with the first held inline because most events go to one destination. An
    /// array per event meant a million allocations at start, and a million frees after it, with a million pending.
    private struct Entry {
        var event: EventSummary
        /// The first delivery, nil only when `others` is empty too.
        var first: Progress?
        var others: [Progress] = []

        init(event: EventSummary, destinations: [String], sinceMs: Int64) {
            self.event = event
            // Ingest never journals a destination twice for one event. A hand-made journal that does still gets
            // one delivery per destination.
            for destination in destinations where !self.contains(destination) {
                self.append(Progress(destination: destination, sinceMs: sinceMs))
            }
        }

        var count: Int {
            self.first == nil ? 0 : 1 + self.others.count
        }

        func contains(_ destination: String) -> Bool {
            self.first?.destination == destination || self.others.contains { $0.destination == destination }
        }

        mutating func append(_ progress: Progress) {
            if self.first == nil {
                self.first = progress
            } else {
                self.others.append(progress)
            }
        }

        /// Applies `change` to the destination's progress, and returns false if the event has no delivery to it.
        mutating func update(_ destination: String, _ change: (inout Progress) -> Void) -> Bool {
            if self.first?.destination == destination {
                change(&self.first!)
                return true
            }
            guard let index = self.others.firstIndex(where: { $0.destination == destination }) else { return false }
            change(&self.others[index])
            return true
        }

        mutating func remove(_ destination: String) -> Progress? {
            if let first = self.first, first.destination == destination {
                self.first = self.others.popLast()
                return first
            }
            guard let index = self.others.firstIndex(where: { $0.destination == destination }) else { return nil }
            return self.others.remove(at: index)
        }

        /// Calls `body` with each delivery in the order of their destinations' ids.
        func forEachSorted(_ body: (Progress) -> Void) {
            guard let first = self.first else { return }
            if self.others.isEmpty {
                body(first)
            } else {
                ([first] + self.others).sorted { $0.destination < $1.destination }.forEach(body)
            }
        }
    }

    private var entries: [UInt64: Entry] = [:]
    /// How many deliveries the entries hold, so that `pendingDeliveries` allocates its result once.
    private var count = 0
    /// The event types seen. Events share one copy of each type's text instead of the copy each record decoded,
    /// which with a million deliveries pending was a million more strings to free.
    private var types: [String] = []
    /// Per replay id, the deliveries it queued that settled, as the journal's attempt records show them.
    private(set) var replayTallies: [String: ReplayTally] = [:]

    mutating func add(_ event: EventRecord, at location: JournalLocation) {
        guard !event.destinations.isEmpty else { return }
        var summary = EventSummary(event, location: location)
        // Compared byte for byte, because `==` is true for canonically equivalent Unicode spellings, and sharing
        // one of them would change the other's bytes.
        if let shared = self.types.first(where: { $0.utf8.elementsEqual(summary.type.utf8) }) {
            summary.type = shared
        } else if self.types.count < 32 {
            self.types.append(summary.type)
        }
        let entry = Entry(event: summary, destinations: event.destinations, sinceMs: event.acceptedAtMs)
        self.count += entry.count
        if let replaced = self.entries.updateValue(entry, forKey: event.sequence) {
            self.count -= replaced.count
        }
    }

    /// Makes a replayed delivery unsettled again, with no attempts made. A delivery still unsettled is left as it
    /// is, with its owner: a replay journals every match before the engine counts those already pending, and the
    /// engine leaves those with the delivery or replay that queued them. If the owner settled in between, the
    /// engine queued the copy and journaled its record again after the owner's outcome, which reopens it here.
    mutating func reopen(_ replay: ReplayRecord) {
        var entry = self.entries[replay.event.sequence]
            ?? Entry(event: replay.event, destinations: [], sinceMs: replay.atMs)
        guard !entry.contains(replay.destination) else { return }
        entry.append(Progress(destination: replay.destination, replayID: replay.replayID, sinceMs: replay.atMs))
        self.count += 1
        self.entries[replay.event.sequence] = entry
    }

    /// Applies an attempt's outcome; returns the dead letter it made, if it dead-lettered its delivery.
    mutating func apply(_ attempt: AttemptRecord) -> DeadLetter? {
        guard let found = self.entries.index(forKey: attempt.eventSequence) else { return nil }
        guard attempt.outcome.isFinal else {
            _ = self.entries.values[found].update(attempt.destination) { progress in
                progress.attempts = attempt.attempt
                progress.nextAttemptAtMs = attempt.nextAttemptAtMs ?? 0
            }
            return nil
        }
        guard let progress = self.entries.values[found].remove(attempt.destination) else { return nil }
        self.count -= 1
        if let replayID = progress.replayID {
            self.replayTallies[replayID, default: ReplayTally()].count(attempt.outcome)
        }
        let event = self.entries.values[found].event
        if self.entries.values[found].first == nil {
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
            entry.forEachSorted { progress in
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
