import PortoutCore
import PortoutJournal

/// The counts of deliveries a replay submitted: queued, or left out and why.
public struct ReplaySubmission: Sendable, Equatable {
    public var queued = 0
    /// Deliveries left out because the same event was still pending for the destination.
    public var alreadyPending = 0
    /// Deliveries left out because their destination is not configured.
    public var notConfigured = 0

    public init() {}
}

extension DeliveryEngine {
    /// Queues replayed deliveries on the delivery thread, each in sequence order within its port out's lane.
    /// A delivery whose event is still pending for its destination is left out, since it will go out anyway.
    public func submitReplay(
        _ deliveries: [PendingDelivery], completion: @escaping @Sendable (ReplaySubmission?) -> Void
    ) {
        self.perform { running in
            guard running else { return completion(nil) }
            var submission = ReplaySubmission()
            for delivery in deliveries {
                let key = Self.key(tenant: delivery.tenant, destination: delivery.destination)
                guard let runtime = self.loop.destinations[key] else {
                    submission.notConfigured += 1
                    continue
                }
                if runtime.queue.contains(sequence: delivery.sequence, orderingKey: delivery.orderingKey) {
                    submission.alreadyPending += 1
                    continue
                }
                runtime.queue.enqueue(delivery)
                submission.queued += 1
                self.updateCounters(key) { $0.pending = runtime.queue.count }
            }
            completion(submission)
        }
    }

    /// Withdraws the deliveries of replay `replayID` that have not gone out, journaling each as cancelled so that
    /// a restart does not queue them again. Attempts in flight finish, and one that fails is withdrawn then
    /// instead of retried. `completion` gets the number withdrawn now, or nil if the engine has stopped.
    public func cancelReplay(_ replayID: String, completion: @escaping @Sendable (Int?) -> Void) {
        self.perform { running in
            guard running else { return completion(nil) }
            self.loop.cancelledReplays.insert(replayID)
            let now = WallClock.milliseconds()
            var withdrawn = 0
            // Detached destinations too: one removed by a reload keeps its queue in case it is configured again.
            for (key, runtime) in self.loop.destinations.merging(self.loop.detached, uniquingKeysWith: { first, _ in first }) {
                let removed = runtime.queue.removeWaiting { $0.replayID == replayID }
                withdrawn += removed.count
                for delivery in removed {
                    let record = AttemptRecord.withdrawal(of: delivery, replayID: replayID, atMs: now)
                    self.loop.hold(.attempt(record), nowMs: now)
                    self.observer?.settled(delivery, attempt: record)
                }
                if !removed.isEmpty {
                    self.updateCounters(key) { $0.pending = runtime.queue.count }
                }
            }
            completion(withdrawn)
        }
    }
}

extension AttemptRecord {
    /// Creates the record of a delivery withdrawn because its replay was cancelled.
    public static func withdrawal(of delivery: PendingDelivery, replayID: String, atMs: Int64) -> AttemptRecord {
        AttemptRecord(
            eventSequence: delivery.sequence, tenant: delivery.tenant, destination: delivery.destination,
            attempt: delivery.attempts, outcome: .cancelled, httpStatus: nil, atMs: atMs, nextAttemptAtMs: nil,
            error: Self.withdrawalReason(replayID))
    }

    /// The reason journaled with each delivery withdrawn from a cancelled replay.
    public static func withdrawalReason(_ replayID: String) -> String {
        "replay \(replayID) was cancelled"
    }
}
