import PortoutCore
import PortoutJournal

/// What abandoning a destination's deliveries did.
public struct Abandonment: Sendable, Equatable {
    /// Deliveries dead-lettered by the request.
    public var abandoned = 0
    /// Attempts in flight, which were left to settle as usual: one that fails waits for a retry like any other.
    public var inFlight = 0
    /// Whether the configuration names the destination. Deliveries of a destination it does not name were held
    /// in case a reload or a start configured it again.
    public var isConfigured = true

    public init() {}
}

/// A failure to abandon a destination's deliveries.
public enum AbandonError: Error, Sendable, Equatable {
    /// The configuration does not name the destination, and no delivery of it is held.
    case notFound
    /// The destination is active, so attempts would go on starting while its deliveries are abandoned.
    case active
    /// The engine has stopped, as it does during shutdown.
    case stopped
    /// The deliveries left memory, but their records could not be journaled, so the next start queues them
    /// again.
    case notJournaled(String)
}

extension DeliveryEngine {
    /// Dead-letters every delivery waiting for a destination that is paused, disabled or no longer configured,
    /// so that an operator can give up on a destination gone for good. Held deliveries otherwise stay in memory
    /// and keep their journal segments from retention for as long as the destination stays held.
    ///
    /// Each delivery is journaled as a dead letter with its attempts so far, no status and `reason`, and goes on
    /// the dead-letter list, from which a redelivery can send it again. Unlike a dead letter that gave up, it is
    /// not reported to the operational webhook one by one, since an operator asked for all of them at once.
    /// `completion` runs once the records are durable, on the journal's writer thread.
    public func abandonWaiting(
        tenant: String, destination: String, reason: String,
        completion: @escaping @Sendable (Result<Abandonment, AbandonError>) -> Void
    ) {
        self.perform { running in
            guard running else { return completion(.failure(.stopped)) }
            let key = Self.key(tenant: tenant, destination: destination)
            let configured = self.loop.destinations[key]
            if let configured, configured.mode == .active {
                return completion(.failure(.active))
            }
            let runtime = configured ?? self.loop.detached[key]
            guard runtime != nil || self.loop.unconfigured[key] != nil else {
                return completion(.failure(.notFound))
            }
            let now = WallClock.milliseconds()
            var result = Abandonment()
            result.isConfigured = configured != nil
            var removed = runtime?.queue.removeWaiting { _ in true } ?? []
            result.inFlight = runtime?.queue.inFlight ?? 0
            if self.loop.unconfigured[key] != nil {
                // Changed in place, since a copy of a large queue would be copied again on its first change.
                removed += self.loop.unconfigured[key]!.removeWaiting { _ in true }
                if self.loop.unconfigured[key]!.count == 0 {
                    self.loop.unconfigured[key] = nil
                }
            }
            for delivery in removed {
                let record = AttemptRecord(
                    eventSequence: delivery.sequence, tenant: delivery.tenant, destination: delivery.destination,
                    attempt: delivery.attempts, outcome: .deadLettered, httpStatus: nil, atMs: now,
                    nextAttemptAtMs: nil, error: reason)
                self.loop.hold(.attempt(record), nowMs: now)
                self.loop.heldChanges.append(.abandoned(delivery, record))
                self.observer?.settled(delivery, attempt: record)
            }
            result.abandoned = removed.count
            if let runtime {
                self.updateCounters(key) { statistics in
                    statistics.pending = runtime.queue.count
                    statistics.abandoned += removed.count
                }
            }
            guard !removed.isEmpty else { return completion(.success(result)) }
            let abandonment = result
            self.journalOutcomes(force: true, durable: true) { error in
                completion(error.map { .failure(.notJournaled($0.description)) } ?? .success(abandonment))
            }
        }
    }
}
