import CCurl
import CCurlShim
import PortoutJournal

/// The multi handle, the transfers in it, the workers that run more of them, and a pool of idle ones.
///
/// Thread-safety: `multi` is shared only for `curl_multi_wakeup`, which libcurl allows from any thread. All other
/// members are confined to the delivery thread, so the class is `@unchecked Sendable`.
final class DeliveryLoop: @unchecked Sendable {
    let multi: UnsafeMutableRawPointer
    var destinations: [String: DestinationRuntime]
    /// Destinations removed by a configuration reload, with the deliveries they still had. Nothing is started for
    /// them; attempts in flight at the reload settle here, and a later reload that adds one back takes it over.
    var detached: [String: DestinationRuntime] = [:]
    /// The counts since start of destinations a reload removed, so that adding one back carries them on.
    var detachedStatistics: [String: DestinationStatistics] = [:]
    /// Deliveries to destinations that have never been configured since the engine started, such as those the
    /// journal had unsettled at start for a destination the configuration no longer names. Nothing is started
    /// for them, and a reload that configures the destination takes its queue over.
    var unconfigured: [String: DeliveryQueue] = [:]
    /// Replays cancelled since the engine started: an attempt of theirs that was in flight at the cancellation
    /// is withdrawn if it fails, instead of being retried.
    var cancelledReplays: Set<String> = []
    /// Saved modes of destinations held before a restart that are not configured now, by `tenant/destination`.
    /// They are kept in the saved file and applied if a reload configures the destination again.
    var heldUnconfigured: [String: DestinationControlFile.Entry] = [:]
    /// Set when the saved modes could not be read at this start or one before it, so that a destination they do
    /// not name may have been held, and is paused.
    var unknownModes: DestinationControlFile.UnknownModes?
    /// Set while an unreadable destinations.json could not be copied aside, so that only a save an operator
    /// requests replaces it.
    var savesKeepModesFile = false
    /// When to try again to save the modes after a save failed, or nil while the file has every change.
    var modesSaveRetryAtMs: Int64?
    /// The time of each destination's last 410 in the journal at start, by `tenant/destination` key.
    var goneSinceMs: [String: Int64] = [:]
    private var active: [UnsafeMutableRawPointer: CurlTransfer] = [:]
    private var idle: [CurlTransfer] = []
    /// Threads with multi handles of their own, and the transfers each has in flight.
    private var workers: [CurlWorker] = []
    private var workerInFlight: [Int] = []
    var abandonmentsInWrite = AbandonmentsInWrite()
    /// Attempt records settled and not yet journaled; `DeliveryEngine.journalOutcomes` writes them in batches.
    var outcomes: [JournalRecord] = []
    /// When the oldest record in `outcomes` was added; nil while it is empty.
    var outcomesHeldSinceMs: Int64?
    /// The changes to the dead-letter list that `outcomes` make, for the observer once they are written.
    var heldChanges: [DeadLetterChange] = []

    /// The number of replays whose records are on their way to the journal and not yet submitted, opened by
    /// `DeliveryEngine.openReplayWindow`.
    var openReplayWindows = 0
    /// The deliveries whose final outcome was held while a replay window was open. Their records may follow a
    /// replay's records in the journal, so a copy the replay queues for one of them is journaled again.
    var settledInReplayWindow: Set<DeliveryKey> = []

    /// Holds a delivery's attempt record, with the change it makes to the dead-letter list.
    func hold(_ attempt: AttemptRecord, of delivery: PendingDelivery, nowMs: Int64) {
        self.hold(.attempt(attempt), nowMs: nowMs)
        if let change = DeadLetterChange(delivery, attempt: attempt) {
            self.heldChanges.append(change)
        }
    }

    func hold(_ outcome: JournalRecord, nowMs: Int64) {
        if self.openReplayWindows > 0, case .attempt(let attempt) = outcome, attempt.outcome.isFinal {
            self.settledInReplayWindow.insert(DeliveryKey(sequence: attempt.eventSequence, destination: attempt.destination))
        }
        self.outcomes.append(outcome)
        if self.outcomesHeldSinceMs == nil {
            self.outcomesHeldSinceMs = nowMs
        }
    }

    /// Returns the runtime of a configured or detached destination.
    func runtime(_ key: String) -> DestinationRuntime? {
        self.destinations[key] ?? self.detached[key]
    }

    /// Creates the loop with `transferThreads - 1` workers beside the delivery thread's own multi handle.
    init(destinations: [String: DestinationRuntime], transferThreads: Int) {
        CurlGlobal.initialise()
        guard let multi = curl_multi_init() else {
            fatalError("curl_multi_init failed: libcurl could not allocate a handle")
        }
        self.multi = multi
        self.destinations = destinations
        let wakeTarget = WakeTarget(multi: multi)
        for index in 1..<max(1, transferThreads) {
            self.workers.append(CurlWorker(name: "delivery-\(index)", maxConnections: 16) {
                curl_multi_wakeup(wakeTarget.multi)
            })
            self.workerInFlight.append(0)
        }
        self.updateConnectionLimit()
    }

    /// Lets libcurl keep as many idle connections as the destinations may use at once, on every multi handle,
    /// since transfers to one destination may run on any of them.
    func updateConnectionLimit() {
        let connections = self.destinations.values.reduce(0) { $0 + $1.config.concurrency }
        _ = portout_curl_multi_setopt_long(self.multi, CURLMOPT_MAXCONNECTS, max(16, connections))
        for worker in self.workers {
            worker.setMaxConnections(connections)
        }
    }

    deinit {
        curl_multi_cleanup(self.multi)
    }

    var inFlightCount: Int {
        self.active.count + self.workerInFlight.reduce(0, +)
    }

    func takeTransfer() -> CurlTransfer {
        self.idle.popLast() ?? CurlTransfer()
    }

    /// Starts a prepared transfer on whichever multi handle has the fewest in flight, this thread's first.
    func add(_ transfer: CurlTransfer) {
        var chosen = -1
        var fewest = self.active.count
        for (index, count) in self.workerInFlight.enumerated() where count < fewest {
            chosen = index
            fewest = count
        }
        if chosen >= 0 {
            self.workerInFlight[chosen] += 1
            self.workers[chosen].start(transfer)
        } else {
            self.active[transfer.handle] = transfer
            curl_multi_add_handle(self.multi, transfer.handle)
        }
    }

    func remove(_ handle: UnsafeMutableRawPointer) -> CurlTransfer? {
        curl_multi_remove_handle(self.multi, handle)
        return self.active.removeValue(forKey: handle)
    }

    /// Returns the transfers the workers finished since the last call.
    func takeWorkerFinished() -> [CurlWorker.Finished] {
        var finished: [CurlWorker.Finished] = []
        for (index, worker) in self.workers.enumerated() {
            let done = worker.takeFinished()
            self.workerInFlight[index] -= done.count
            finished.append(contentsOf: done)
        }
        return finished
    }

    func recycle(_ transfer: CurlTransfer) {
        self.idle.append(transfer)
    }

    /// Abandons every transfer in flight and stops the workers, as the engine does when it stops.
    func cancelAll() {
        for handle in Array(self.active.keys) {
            _ = self.remove(handle)
        }
        for (index, worker) in self.workers.enumerated() {
            worker.stop()
            self.workerInFlight[index] = 0
        }
        self.workers.removeAll()
        self.workerInFlight.removeAll()
    }
}

/// The delivery thread's multi handle as workers hold it: only to call `curl_multi_wakeup`, which libcurl
/// documents as safe from any thread, hence `@unchecked Sendable`.
private struct WakeTarget: @unchecked Sendable {
    let multi: UnsafeMutableRawPointer
}

/// The abandonments whose records are being written, each under its own token. Their deliveries are in no queue
/// meanwhile. Retention must still keep their events' segments, and a cancelled replay must wait for its copies
/// among them. A resume must wait too, or it could send a later status before an earlier one that a failed write
/// puts back.
struct AbandonmentsInWrite {
    private struct Entry {
        var key: String
        var oldestSegment: UInt64
        /// The replayed deliveries among them, by replay id.
        var replays: [String: Int]
    }

    private var entries: [Int: Entry] = [:]
    private var lastToken = 0

    /// Records the deliveries of one abandonment of destination `key` and returns the token that removes them.
    mutating func insert(key: String, deliveries: [PendingDelivery]) -> Int {
        var replays: [String: Int] = [:]
        for delivery in deliveries {
            if let replayID = delivery.replayID {
                replays[replayID, default: 0] += 1
            }
        }
        self.lastToken += 1
        self.entries[self.lastToken] = Entry(
            key: key, oldestSegment: deliveries.lazy.map(\.location.segment).min() ?? .max, replays: replays)
        return self.lastToken
    }

    mutating func remove(_ token: Int) {
        self.entries.removeValue(forKey: token)
    }

    var oldestSegment: UInt64? {
        self.entries.values.lazy.map(\.oldestSegment).min()
    }

    func contains(key: String) -> Bool {
        self.entries.values.contains { $0.key == key }
    }

    func count(ofReplay replayID: String) -> Int {
        self.entries.values.reduce(0) { $0 + ($1.replays[replayID] ?? 0) }
    }
}
