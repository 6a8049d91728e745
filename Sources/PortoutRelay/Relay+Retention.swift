import Foundation
import PortoutCore
import PortoutDelivery
import PortoutJournal
import Synchronization

/// The outcome of one retention pass.
public struct RetentionReport: Sendable, Equatable {
    public var removedSegments: [UInt64] = []
    public var removedBytes = 0
    /// The oldest segment kept only because it contains an unsettled delivery's event.
    public var keptForUnsettled: UInt64?
    public var forgottenPortOuts = 0
    public var forgottenDeadLetters = 0
}

extension Relay {
    /// How often retention runs while the relay is up; it also runs a minute after start.
    static let retentionIntervalSeconds = 600

    /// Removes the journal segments that retention allows: older than `journal.retentionSeconds` and holding no
    /// event whose delivery is unsettled. Port outs and dead letters whose events were in them are forgotten
    /// first, so nothing reads a removed segment. Returns nil when retention is not configured.
    ///
    /// NOTE: dedupe keys and lifecycle state come from the journal at start, so after a restart an event older than
    /// the retention period is accepted again if the carrier resends it.
    @discardableResult
    public func applyRetention() -> RetentionReport? {
        guard let retentionSeconds = self.config.journal.retentionSeconds else { return nil }
        return self.replays.runExclusively { () -> RetentionReport? in
            let pending = Locked<(segment: UInt64?, isRunning: Bool)>((nil, false))
            let answered = DispatchSemaphore(value: 0)
            self.engine.oldestPendingSegment { segment, isRunning in
                pending.withLock { $0 = (segment, isRunning) }
                answered.signal()
            }
            answered.wait()
            let (enginePending, isRunning) = pending.withLock { $0 }
            guard isRunning else { return nil }
            // A replay hands its deliveries to the engine after leaving the scan queue, so those in transit are
            // pinned here as well.
            let pinned = [enginePending, self.replays.oldestInTransitSegment]
                .compactMap { $0 }.min()
            let segments: [JournalRetention.SegmentInfo]
            do {
                segments = try JournalRetention.segments(in: self.journal.directory)
            } catch {
                self.logger.error("journal retention skipped", ["error": .string("\(error)")])
                return nil
            }
            let plan = JournalRetention.plan(
                segments, nowMs: WallClock.milliseconds(), retentionSeconds: retentionSeconds,
                oldestUnsettledSegment: pinned, activeSegment: self.journal.activeSegment)
            var report = RetentionReport()
            report.keptForUnsettled = plan.keptForUnsettled
            guard let last = plan.removable.last else { return report }
            report.forgottenPortOuts = self.store.forget(before: last.segment + 1)
            report.forgottenDeadLetters = self.deadLetters.forget(before: last.segment + 1)
            report.removedSegments = self.journal.remove(plan)
            report.removedBytes = plan.removable.filter { report.removedSegments.contains($0.segment) }.reduce(0) { $0 + $1.bytes }
            self.logger.info(
                "journal segments removed by retention",
                [
                    "segments": .number(Double(report.removedSegments.count)),
                    "bytes": .number(Double(report.removedBytes)),
                    "forgottenPortOuts": .number(Double(report.forgottenPortOuts)),
                    "forgottenDeadLetters": .number(Double(report.forgottenDeadLetters)),
                    "keptForUnsettled": plan.keptForUnsettled.map { .string(SegmentFile.name(for: $0)) } ?? .null,
                ])
            return report
        }
    }

    /// Starts the thread that runs retention a minute after start and every `retentionIntervalSeconds` after
    /// that, until `shutdown` signals `retentionStop`.
    func startRetentionThread() {
        startNamedThread("retention") { [self] in
            var wait = 60
            while self.retentionStop.wait(timeout: .now() + .seconds(wait)) == .timedOut {
                self.applyRetention()
                wait = Self.retentionIntervalSeconds
            }
        }
    }
}
