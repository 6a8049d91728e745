import CCurl
import PortoutCore
import PortoutJournal

/// The result of abandoning a destination's waiting deliveries.
public struct Abandonment: Sendable, Equatable {
    /// Deliveries dead-lettered by the request.
    public var abandoned = 0
    /// Deliveries still waiting, because one request abandons at most `DeliveryEngine.maxAbandonedPerRequest`.
    public var remaining = 0
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
    /// The records could not be journaled. The deliveries were put back in their queues, or withdrawn if they
    /// were copies of a replay cancelled meanwhile. If the engine had stopped, the next start restores them from the
    /// journal.
    case notJournaled(String)
}

extension DeliveryEngine {
    /// The maximum number of deliveries one abandonment takes, short of finishing a lane. Their records are written
    /// and synced in one batch, so webhooks wait behind it, and the records and the dead-letter list's reads of
    /// their events add to memory meanwhile.
    public static let maxAbandonedPerRequest = 100_000

    /// Dead-letters every delivery waiting for a destination that is paused, disabled or no longer configured,
    /// so that an operator can give up on a destination gone for good. Held deliveries otherwise stay in memory
    /// and keep their journal segments from retention for as long as the destination stays held.
    ///
    /// Each delivery is journaled as a dead letter with its attempts so far, no HTTP status and `reason`, and goes on
    /// the dead-letter list, from which a redelivery can send it again. Unlike a dead letter that gave up, it is
    /// not reported to the operational webhook one by one, since an operator asked for all of them at once.
    /// `completion` runs once the records are durable, or once the deliveries are back in their queues after a
    /// failed write: on the delivery thread, or, once the engine has stopped, on the thread that ended the write.
    ///
    /// One request abandons about `maxAbandonedPerRequest` deliveries, whole port outs at a time, so a little more
    /// when the last lane it takes is long, and reports how many remain.
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
            let limit = Self.maxAbandonedPerRequest
            var removed = runtime?.queue.removeWaiting(limit: limit) { _ in true } ?? []
            result.inFlight = runtime?.queue.inFlight ?? 0
            result.remaining = (runtime?.queue.count ?? 0) - result.inFlight
            if self.loop.unconfigured[key] != nil {
                // Changed in place, since a copy of a large queue would be copied again on its first change.
                removed += self.loop.unconfigured[key]!.removeWaiting(limit: limit - removed.count) { _ in true }
                result.remaining += self.loop.unconfigured[key]!.count
                if self.loop.unconfigured[key]!.count == 0 {
                    self.loop.unconfigured[key] = nil
                }
            }
            result.abandoned = removed.count
            if let runtime {
                self.updateCounters(key) { $0.pending = runtime.queue.count }
            }
            guard !removed.isEmpty else { return completion(.success(result)) }
            var records: [AttemptRecord] = []
            records.reserveCapacity(removed.count)
            for delivery in removed {
                let record = AttemptRecord(
                    eventSequence: delivery.sequence, tenant: delivery.tenant, destination: delivery.destination,
                    attempt: delivery.attempts, outcome: .deadLettered, httpStatus: nil, atMs: now,
                    nextAttemptAtMs: nil, error: reason)
                self.loop.hold(.attempt(record), nowMs: now)
                self.loop.heldChanges.append(.abandoned(delivery, record))
                records.append(record)
            }
            // Until the records are written, retention must still keep the events' segments, which the queue no
            // longer names, so that a failed write can put the deliveries back where a restart finds them.
            let token = self.loop.abandonmentsInWrite.insert(key: key, deliveries: removed)
            let abandonment = result
            let deliveries = removed
            let journaled = records
            self.journalOutcomes(force: true, durable: true) { error in
                self.perform { running in
                    if running {
                        self.loop.abandonmentsInWrite.remove(token)
                    }
                    if let error {
                        if running {
                            self.restore(deliveries, key: key)
                        }
                        return completion(.failure(.notJournaled(error.description)))
                    }
                    for (delivery, record) in zip(deliveries, journaled) {
                        self.observer?.settled(delivery, attempt: record)
                    }
                    self.updateCounters(key) { $0.abandoned += deliveries.count }
                    completion(.success(abandonment))
                }
            }
        }
    }

    /// Puts back deliveries whose abandonment could not be journaled, where a restart would find them. A copy of
    /// a replay cancelled meanwhile is withdrawn instead, as the cancellation would have done.
    ///
    /// A copy put back for a destination that a reload removed meanwhile is marked stranded, as that reload marked
    /// the copies it found.
    ///
    /// NOTE: a replay submitted while the write was pending found them settled and may have queued copies, which
    /// then go out as well. A reload that configured the destination meanwhile, as an active one, may have sent a
    /// port out's later status ahead of an earlier one put back here.
    private func restore(_ deliveries: [PendingDelivery], key: String) {
        let now = WallClock.milliseconds()
        let runtime = self.loop.runtime(key)
        let isConfigured = self.loop.destinations[key] != nil
        var stranded: [String: Int] = [:]
        for var delivery in deliveries {
            if let replayID = delivery.replayID, self.loop.cancelledReplays.contains(replayID) {
                let record = AttemptRecord.withdrawal(of: delivery, replayID: replayID, atMs: now)
                self.loop.hold(record, of: delivery, nowMs: now)
                self.observer?.settled(delivery, attempt: record)
                continue
            }
            if !isConfigured, let replayID = delivery.replayID, !delivery.isStranded {
                delivery.isStranded = true
                stranded[replayID, default: 0] += 1
            }
            if let runtime {
                runtime.queue.enqueue(delivery)
            } else {
                self.loop.unconfigured[key, default: DeliveryQueue()].enqueue(delivery)
            }
        }
        if !stranded.isEmpty {
            self.observer?.stranded(stranded)
        }
        if let runtime {
            self.updateCounters(key) { $0.pending = runtime.queue.count }
        }
        curl_multi_wakeup(self.loop.multi)
    }
}
