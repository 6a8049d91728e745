import Foundation
import PortoutCore
import PortoutDelivery
import PortoutJournal
import Synchronization

/// One replay or redelivery: the deliveries it found, queued again through the normal delivery path.
///
/// Thread-safety: state is behind a lock; the scan runs on a background queue and settlements arrive on the
/// delivery thread.
final class ReplayJob: Sendable {
    enum Status: String, Sendable {
        /// Reading the journal for matches.
        case scanning
        /// Deliveries queued; some have not settled.
        case running
        case completed
        case cancelled
        case failed
    }

    struct Progress: Sendable {
        var status = Status.scanning
        var scannedRecords = 0
        var matched = 0
        var queued = 0
        var alreadyPending = 0
        var notConfigured = 0
        var delivered = 0
        var deadLettered = 0
        var withdrawn = 0
        var error: String?
        var finishedAtMs: Int64?
        var isCancelRequested = false

        var settled: Int {
            self.delivered + self.deadLettered + self.withdrawn
        }
    }

    let id: String
    /// `replay` for a journal replay, `redelivery` for dead letters chosen from the list.
    let kind: String
    let filter: DeliveryFilter
    let createdAtMs: Int64
    let progress = Locked<Progress>(Progress())

    init(kind: String, filter: DeliveryFilter) {
        self.id = "rpl_" + (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        self.kind = kind
        self.filter = filter
        self.createdAtMs = WallClock.milliseconds()
    }

    var isFinished: Bool {
        self.progress.withLock { [.completed, .cancelled, .failed].contains($0.status) }
    }

    var jsonValue: JSONValue {
        let progress = self.progress.withLock { $0 }
        return .object(JSONObject([
            ("object", "replay"),
            ("id", .string(self.id)),
            ("kind", .string(self.kind)),
            ("status", .string(progress.status.rawValue)),
            ("filter", self.filter.jsonValue),
            ("createdAt", .string(RFC3339.format(epochMilliseconds: self.createdAtMs))),
            ("finishedAt", progress.finishedAtMs.map { .string(RFC3339.format(epochMilliseconds: $0)) } ?? .null),
            ("scannedRecords", .number(Double(progress.scannedRecords))),
            ("matched", .number(Double(progress.matched))),
            ("queued", .number(Double(progress.queued))),
            ("alreadyPending", .number(Double(progress.alreadyPending))),
            ("notConfigured", .number(Double(progress.notConfigured))),
            ("delivered", .number(Double(progress.delivered))),
            ("deadLettered", .number(Double(progress.deadLettered))),
            ("withdrawn", .number(Double(progress.withdrawn))),
            ("error", progress.error.map { .string($0) } ?? .null),
        ]))
    }
}

/// The replay jobs of a running relay, kept in memory, and the count of their settled deliveries.
///
/// NOTE: jobs are not kept across a restart. The deliveries they queued are journaled, so they resume after a
/// restart, but `GET /admin/replays/{id}` then returns 404 for the job.
final class ReplayRegistry: Sendable {
    private let logger: Logger
    private let jobs = Locked<[String: ReplayJob]>([:])
    private let onFinish: (@Sendable (ReplayJob) -> Void)?

    /// Creates the registry; `onFinish` is called once with each job that completes, is cancelled or fails.
    init(logger: Logger, onFinish: (@Sendable (ReplayJob) -> Void)? = nil) {
        self.logger = logger
        self.onFinish = onFinish
    }

    func add(_ job: ReplayJob) {
        self.jobs.withLock { $0[job.id] = job }
    }

    func job(_ id: String) -> ReplayJob? {
        self.jobs.withLock { $0[id] }
    }

    /// Returns every job, newest first.
    func all() -> [ReplayJob] {
        self.jobs.withLock { Array($0.values) }.sorted { $0.createdAtMs > $1.createdAtMs }
    }

    /// Counts a settled attempt of a job's delivery; called on the delivery thread.
    func settled(replayID: String, outcome: AttemptOutcome) {
        guard let job = self.job(replayID) else { return }
        let finalStatus = job.progress.withLock { progress -> ReplayJob.Status? in
            switch outcome {
            case .delivered: progress.delivered += 1
            case .deadLettered: progress.deadLettered += 1
            case .cancelled: progress.withdrawn += 1
            case .retryScheduled: return nil
            }
            guard progress.status == .running && progress.settled >= progress.queued else { return nil }
            return progress.isCancelRequested ? .cancelled : .completed
        }
        if let finalStatus {
            self.finish(job, status: finalStatus)
        }
    }

    func finish(_ job: ReplayJob, status: ReplayJob.Status, error: String? = nil) {
        let progress = job.progress.withLock { progress -> ReplayJob.Progress? in
            guard ![.completed, .cancelled, .failed].contains(progress.status) else { return nil }
            progress.status = status
            progress.error = error
            progress.finishedAtMs = WallClock.milliseconds()
            return progress
        }
        guard let progress else { return }
        let fields: KeyValuePairs<String, JSONValue> = [
            "replay": .string(job.id), "kind": .string(job.kind), "status": .string(status.rawValue),
            "matched": .number(Double(progress.matched)), "queued": .number(Double(progress.queued)),
            "delivered": .number(Double(progress.delivered)), "deadLettered": .number(Double(progress.deadLettered)),
            "withdrawn": .number(Double(progress.withdrawn)), "error": error.map { .string($0) } ?? .null,
        ]
        if status == .failed {
            self.logger.error("replay failed", fields)
        } else {
            self.logger.info("replay finished", fields)
        }
        self.onFinish?(job)
    }
}

/// Starts, scans and cancels replay jobs.
final class ReplayJobs: Sendable {
    let registry: ReplayRegistry
    private let dataDirectory: String
    private let journal: Journal
    private let engine: DeliveryEngine
    private let deadLetters: DeadLetterIndex
    private let scans = DispatchQueue(label: "replay-scan")
    /// Per job, the oldest segment holding an event whose replay is journaled but not yet with the engine.
    private let inTransit = Locked<[String: UInt64]>([:])

    init(
        registry: ReplayRegistry, dataDirectory: String, journal: Journal, engine: DeliveryEngine,
        deadLetters: DeadLetterIndex
    ) {
        self.registry = registry
        self.dataDirectory = dataDirectory
        self.journal = journal
        self.engine = engine
        self.deadLetters = deadLetters
    }

    private func finish(_ job: ReplayJob, status: ReplayJob.Status, error: String? = nil) {
        self.registry.finish(job, status: status, error: error)
    }

    /// The oldest segment that replays on their way to the engine still need, which retention must keep.
    var oldestInTransitSegment: UInt64? {
        self.inTransit.withLock { $0.values.min() }
    }

    /// Runs `work` on the queue that scans and queues replays, so that it never overlaps one; retention removes
    /// segments this way.
    func runExclusively<Value>(_ work: () -> Value) -> Value {
        self.scans.sync(execute: work)
    }

    /// Counts the deliveries a filter takes and returns up to `sampleSize` of them, without queueing anything.
    func dryRun(
        _ filter: DeliveryFilter, sampleSize: Int = 10,
        completion: @escaping @Sendable (Result<(count: Int, sample: [ReplayScan.Match]), ReplayScan.Failure>) -> Void
    ) {
        let dataDirectory = self.dataDirectory
        self.scans.async {
            completion(ReplayScan.run(dataDirectory: dataDirectory, filter: filter).map { result in
                (result.matches.count, Array(result.matches.prefix(sampleSize)))
            })
        }
    }

    /// Starts a replay: scans the journal on a background queue, then queues the matches.
    func startReplay(_ filter: DeliveryFilter) -> ReplayJob {
        let job = ReplayJob(kind: "replay", filter: filter)
        self.registry.add(job)
        let dataDirectory = self.dataDirectory
        self.scans.async {
            let result = ReplayScan.run(dataDirectory: dataDirectory, filter: filter) {
                job.progress.withLock { $0.isCancelRequested }
            }
            switch result {
            case .success(let found):
                job.progress.withLock { $0.scannedRecords = found.scannedRecords }
                self.queue(found.matches, for: job)
            case .failure(.stopped):
                self.finish(job, status: .cancelled)
            case .failure(let failure):
                self.finish(job, status: .failed, error: failure.description)
            }
        }
        return job
    }

    /// Starts a redelivery of dead letters already chosen from the list, which needs no scan.
    func startRedelivery(_ chosen: [DeadLetter], filter: DeliveryFilter) -> ReplayJob {
        let job = ReplayJob(kind: "redelivery", filter: filter)
        self.registry.add(job)
        let matches = chosen.map { ReplayScan.Match(event: $0.event, destination: $0.destination) }
        self.scans.async {
            self.queue(matches, for: job)
        }
        return job
    }

    /// Journals a replay record for every match whose destination is configured, then hands those deliveries to
    /// the engine. Until the engine has them, their segments are pinned against retention.
    func queue(_ matches: [ReplayScan.Match], for job: ReplayJob) {
        let configured = self.engine.configuredDestinations()
        let sendable = matches.filter {
            configured.contains(DeliveryEngine.key(tenant: $0.event.tenant, destination: $0.destination))
        }
        let cancelled = job.progress.withLock { progress -> Bool in
            progress.matched = matches.count
            progress.notConfigured = matches.count - sendable.count
            return progress.isCancelRequested
        }
        guard !cancelled else { return self.finish(job, status: .cancelled) }
        guard let oldestSegment = sendable.map(\.event.location.segment).min() else {
            return self.finish(job, status: .completed)
        }
        self.inTransit.withLock { $0[job.id] = oldestSegment }
        let now = WallClock.milliseconds()
        let records = sendable.map {
            JournalRecord.replay(ReplayRecord(replayID: job.id, destination: $0.destination, event: $0.event, atMs: now))
        }
        self.journal.appendAll(records) { result in
            if case .failure(let error) = result {
                self.inTransit.withLock { _ = $0.removeValue(forKey: job.id) }
                return self.finish(job, status: .failed, error: "the replay could not be journaled: \(error.description)")
            }
            for match in sendable {
                self.deadLetters.suspend(DeliveryKey(sequence: match.event.sequence, destination: match.destination))
            }
            let deliveries = sendable.map {
                PendingDelivery(event: $0.event, destination: $0.destination, replayID: job.id, sinceMs: now)
            }
            self.engine.submitReplay(deliveries) { submission in
                self.inTransit.withLock { _ = $0.removeValue(forKey: job.id) }
                guard let submission else {
                    return self.finish(job, status: .failed, error: "the relay is shutting down")
                }
                let (done, cancelRequested) = job.progress.withLock { progress in
                    progress.queued = submission.queued
                    progress.alreadyPending = submission.alreadyPending
                    progress.notConfigured += submission.notConfigured
                    if progress.status == .scanning {
                        progress.status = .running
                    }
                    return (progress.settled >= progress.queued, progress.isCancelRequested)
                }
                if cancelRequested {
                    // The cancel arrived while the matches were being journaled, before there was anything to
                    // withdraw.
                    self.engine.cancelReplay(job.id) { _ in self.finish(job, status: .cancelled) }
                } else if done {
                    self.finish(job, status: .completed)
                }
            }
        }
    }

    /// Requests cancellation: a scan stops, and queued deliveries that have not gone out are withdrawn.
    func cancel(_ job: ReplayJob, completion: @escaping @Sendable () -> Void) {
        let wasScanning = job.progress.withLock { progress -> Bool in
            progress.isCancelRequested = true
            return progress.status == .scanning
        }
        guard !wasScanning else { return completion() }
        self.engine.cancelReplay(job.id) { _ in
            if !job.isFinished {
                self.finish(job, status: .cancelled)
            }
            completion()
        }
    }
}
