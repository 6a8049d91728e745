import PortoutCore
import PortoutJournal

/// The counts of deliveries a replay submitted: queued, or left out and why.
public struct ReplaySubmission: Sendable, Equatable {
    public var queued = 0
    /// Deliveries left out because the same event was still pending for the destination.
    public var alreadyPending = 0
    /// Deliveries whose destination a reload removed after the scan. They are held, marked stranded, and go out
    /// if a reload configures the destination again.
    public var stranded = 0

    public init() {}
}

extension DeliveryEngine {
    /// Journals the outcomes held so far, then opens a replay window and runs `body` on the delivery thread.
    /// If the engine has stopped, `body` gets false and no window opens.
    ///
    /// `body` must queue the replay's records to the journal. Recovery leaves a replayed delivery with its
    /// owner while the owner is unsettled at the replay's record. An owner that settles after that record but
    /// before `submitReplay` lets the engine queue the copy, and recovery would then not resume it. Every
    /// outcome held before the window reaches the journal ahead of the replay's records. The window remembers
    /// the deliveries settled after that, and `submitReplay` journals a copy's record again behind its owner's
    /// outcome. `submitReplay` or `closeReplayWindow` closes the window.
    public func openReplayWindow(_ body: @escaping @Sendable (Bool) -> Void) {
        self.perform { running in
            guard running else { return body(false) }
            self.journalOutcomes(force: true)
            self.loop.openReplayWindows += 1
            body(true)
        }
    }

    /// Closes a window whose replay will not be submitted, because its records could not be journaled.
    public func closeReplayWindow() {
        self.perform { running in
            guard running else { return }
            self.endReplayWindow()
        }
    }

    private func endReplayWindow() {
        self.loop.openReplayWindows -= 1
        if self.loop.openReplayWindows == 0 {
            self.loop.settledInReplayWindow.removeAll()
        }
    }

    /// Queues replayed deliveries on the delivery thread, each in sequence order within its port out's lane,
    /// and closes the replay window opened for them. A delivery whose event is still pending for its
    /// destination is left out, since it will go out anyway. One whose destination a reload removed after the
    /// scan is held for it, marked stranded. `records` contains each delivery's replay record, in the same order.
    public func submitReplay(
        _ deliveries: [PendingDelivery], records: [ReplayRecord],
        completion: @escaping @Sendable (ReplaySubmission?) -> Void
    ) {
        precondition(deliveries.count == records.count, "each replayed delivery needs its replay record")
        self.perform { running in
            guard running else { return completion(nil) }
            defer { self.endReplayWindow() }
            var submission = ReplaySubmission()
            var journaledAgain = false
            let now = WallClock.milliseconds()
            for (delivery, record) in zip(deliveries, records) {
                let key = delivery.destinationKey
                let configured = self.loop.destinations[key]
                let isPending = (configured ?? self.loop.detached[key]).map {
                    $0.queue.contains(sequence: delivery.sequence, orderingKey: delivery.orderingKey)
                } ?? self.loop.unconfigured[key]?.contains(sequence: delivery.sequence, orderingKey: delivery.orderingKey)
                if isPending == true {
                    submission.alreadyPending += 1
                    continue
                }
                // Held like an outcome, so it reaches the journal after the owner's final outcome and before
                // any attempt of the copy.
                let settled = DeliveryKey(sequence: delivery.sequence, destination: delivery.destination)
                if self.loop.settledInReplayWindow.contains(settled) {
                    self.loop.hold(.replay(record), nowMs: now)
                    self.loop.heldChanges.append(.replayQueued(settled))
                    journaledAgain = true
                }
                guard let runtime = configured else {
                    var stranded = delivery
                    stranded.isStranded = true
                    if let detached = self.loop.detached[key] {
                        detached.queue.enqueue(stranded)
                    } else {
                        self.loop.unconfigured[key, default: DeliveryQueue()].enqueue(stranded)
                    }
                    submission.stranded += 1
                    continue
                }
                runtime.queue.enqueue(delivery)
                submission.queued += 1
                self.updateCounters(key) { $0.pending = runtime.queue.count }
            }
            if journaledAgain {
                // Synced at once, because outcomes alone wait for the next durable write, and an idle relay may
                // not make one for minutes. A power loss before then would lose the copy.
                self.journalOutcomes(force: true, durable: true)
            }
            completion(submission)
        }
    }

    /// Withdraws the deliveries of replay `replayID` that have not gone out, journaling each as cancelled so that
    /// a restart does not queue them again. Attempts in flight finish, and one that fails is withdrawn then
    /// instead of retried, so each settles once more. `completion` gets the number withdrawn now and the number
    /// in flight, or nil if the engine has stopped.
    public func cancelReplay(
        _ replayID: String, completion: @escaping @Sendable ((withdrawn: Int, inFlight: Int)?) -> Void
    ) {
        self.perform { running in
            guard running else { return completion(nil) }
            self.loop.cancelledReplays.insert(replayID)
            let now = WallClock.milliseconds()
            var withdrawn = 0
            var inFlight = 0
            let withdraw = { (removed: [PendingDelivery]) in
                withdrawn += removed.count
                for delivery in removed {
                    let record = AttemptRecord.withdrawal(of: delivery, replayID: replayID, atMs: now)
                    self.loop.hold(record, of: delivery, nowMs: now)
                    self.observer?.settled(delivery, attempt: record)
                }
            }
            // Detached destinations too: one removed by a reload keeps its queue in case it is configured again.
            for (key, runtime) in self.loop.destinations.merging(self.loop.detached, uniquingKeysWith: { first, _ in first }) {
                let removed = runtime.queue.removeWaiting { $0.replayID == replayID }
                withdraw(removed)
                inFlight += runtime.queue.inFlightCount { $0.replayID == replayID }
                if !removed.isEmpty {
                    self.updateCounters(key) { $0.pending = runtime.queue.count }
                }
            }
            for key in Array(self.loop.unconfigured.keys) {
                withdraw(self.loop.unconfigured[key]!.removeWaiting { $0.replayID == replayID })
            }
            // Abandoned copies whose records are being written settle with that write, like an attempt in flight.
            inFlight += self.loop.abandonmentsInWrite.count(ofReplay: replayID)
            completion((withdrawn, inFlight))
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
