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
    enum Status: String, Sendable, CaseIterable {
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
        /// Deliveries whose destination was not configured at the last start, or was removed by a reload. The
        /// engine keeps them until a reload configures it again, and they count under `notConfigured`, not
        /// `queued`, until then.
        var stranded = 0
        /// Attempts that were in flight when the cancellation withdrew the rest and have not settled yet. The job
        /// finishes as cancelled when the last one settles, so that its counts include them.
        var inFlightAtCancel = 0

        var settled: Int {
            self.delivered + self.deadLettered + self.withdrawn
        }

        /// The status to finish a running job with once every queued delivery has settled, or nil.
        var finalStatusIfSettled: ReplayJob.Status? {
            guard self.status == .running && self.settled >= self.queued else { return nil }
            return self.isCancelRequested ? .cancelled : .completed
        }

        /// Each count with the name the API and the job file give it, in the order they write them. Computed, so
        /// that no shared key-path list needs to be `Sendable`.
        static var countFields: [(name: String, field: WritableKeyPath<Progress, Int>)] {
            [
                ("scannedRecords", \.scannedRecords), ("matched", \.matched), ("queued", \.queued),
                ("alreadyPending", \.alreadyPending), ("notConfigured", \.notConfigured), ("delivered", \.delivered),
                ("deadLettered", \.deadLettered), ("withdrawn", \.withdrawn),
            ]
        }
    }

    /// The kind of a job made at start for a replay found in the journal without a saved job. Its filter is
    /// empty, standing for unknown.
    static let recoveredKind = "recovered"
    static let kinds = ["replay", "redelivery", recoveredKind]

    let id: String
    /// `replay` for a journal replay, `redelivery` for dead letters chosen from the list, or `recoveredKind`.
    let kind: String
    let filter: DeliveryFilter
    /// For a redelivery of dead letters given by id, the first `maxListedIDs` of those ids in id order. The
    /// filter of such a job is only `deadLetteredOnly`, so the ids are what tell it apart.
    let deadLetterIDs: [String]
    /// The number of dead letters a redelivery was given by id, or 0.
    let deadLetterIDCount: Int
    let createdAtMs: Int64
    let progress = Locked<Progress>(Progress())

    /// The maximum number of ids a job keeps, so that a job file of 500 finished jobs stays small when each
    /// was given 10,000.
    static let maxListedIDs = 100

    init(kind: String, filter: DeliveryFilter, deadLetterIDs: [String] = []) {
        self.id = "rpl_" + (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        self.kind = kind
        self.filter = filter
        self.deadLetterIDs = Array(deadLetterIDs.prefix(Self.maxListedIDs))
        self.deadLetterIDCount = deadLetterIDs.count
        self.createdAtMs = WallClock.milliseconds()
    }

    /// Recreates a job saved before a restart.
    init(
        id: String, kind: String, filter: DeliveryFilter, deadLetterIDs: [String] = [], deadLetterIDCount: Int = 0,
        createdAtMs: Int64, progress: Progress
    ) {
        self.id = id
        self.kind = kind
        self.filter = filter
        self.deadLetterIDs = deadLetterIDs
        self.deadLetterIDCount = deadLetterIDCount
        self.createdAtMs = createdAtMs
        self.progress.withLock { $0 = progress }
    }

    /// The ids and their count as the API and the job file write them, or nothing for a job not given ids.
    var idMembers: [(key: String, value: JSONValue)] {
        guard self.deadLetterIDCount > 0 else { return [] }
        return [
            ("ids", .array(self.deadLetterIDs.map { .string($0) })),
            ("idCount", .number(Double(self.deadLetterIDCount))),
        ]
    }

    var isFinished: Bool {
        self.progress.withLock { [.completed, .cancelled, .failed].contains($0.status) }
    }

    var jsonValue: JSONValue {
        let progress = self.progress.withLock { $0 }
        var members: [(key: String, value: JSONValue)] = [
            ("object", "replay"),
            ("id", .string(self.id)),
            ("kind", .string(self.kind)),
            ("status", .string(progress.status.rawValue)),
            ("filter", self.filter.jsonValue),
        ] + self.idMembers + [
            ("createdAt", .string(RFC3339.format(epochMilliseconds: self.createdAtMs))),
            ("finishedAt", progress.finishedAtMs.map { .string(RFC3339.format(epochMilliseconds: $0)) } ?? .null),
            ("cancelRequested", .bool(progress.isCancelRequested)),
        ]
        for (name, field) in Progress.countFields {
            let count = progress[keyPath: field] + (name == "notConfigured" ? progress.stranded : 0)
            members.append((name, .number(Double(count))))
        }
        members.append(("error", progress.error.map { .string($0) } ?? .null))
        return .object(JSONObject(members))
    }
}

/// The replay jobs of a relay and the count of their settled deliveries, saved to `file` at each change of a
/// job's status when there is one.
final class ReplayRegistry: Sendable {
    /// Finished jobs kept, newest first. Older ones are dropped from memory and from the file.
    static let maxFinishedJobs = 500

    let logger: Logger
    private let jobs = Locked<[String: ReplayJob]>([:])
    private let onFinish: (@Sendable (ReplayJob) -> Void)?
    private let file: ReplayJobFile?
    /// Writes the file off the threads that change jobs, among them the delivery thread, which would otherwise
    /// stall every destination for each fsync. One serial queue, so two saves never share the temporary file.
    private let saves = DispatchQueue(label: "replay-save")
    /// Set while a save is queued and not started, so that a burst of changes costs one write.
    private let isSaveQueued = Atomic<Bool>(false)

    /// Creates the registry; `onFinish` is called once with each job that completes, is cancelled or fails.
    init(
        logger: Logger, file: ReplayJobFile? = nil, maxUnfinishedJobs: Int = AdminConfig().maxUnfinishedReplays,
        onFinish: (@Sendable (ReplayJob) -> Void)? = nil
    ) {
        self.logger = logger
        self.file = file
        self.limit = Atomic(maxUnfinishedJobs)
        self.onFinish = onFinish
    }

    /// The maximum number of unfinished jobs, `admin.maxUnfinishedReplays`. A scan holds up to
    /// `ReplayScan.maxDeliveries` matches in memory while it waits its turn, and a running job's deliveries wait
    /// in the engine's queues, so this bounds both. A lower limit set by a reload stops no job that is running.
    var maxUnfinishedJobs: Int {
        get { self.limit.load(ordering: .relaxed) }
        set { self.limit.store(newValue, ordering: .relaxed) }
    }

    private let limit: Atomic<Int>

    /// Adds `job` and returns true, unless `maxUnfinishedJobs` jobs are unfinished already.
    @discardableResult
    func add(_ job: ReplayJob) -> Bool {
        let added = self.jobs.withLock { jobs -> Bool in
            guard Self.unfinishedCount(of: jobs.values) < self.maxUnfinishedJobs else { return false }
            jobs[job.id] = job
            return true
        }
        if added {
            self.save()
        }
        return added
    }

    /// Moves replayed deliveries whose destination a reload removed from `queued` to `notConfigured`, as a start
    /// without the destination does, and finishes each running job that has nothing else left to settle.
    /// `waiting` counts them by replay id. Called on the delivery thread, like `settled`: by the reload for those
    /// waiting, and by the engine for an attempt in flight at the reload once it is to be retried.
    func strand(_ waiting: [String: Int]) {
        guard !waiting.isEmpty else { return }
        for (replayID, count) in waiting {
            guard let job = self.job(replayID) else { continue }
            let finalStatus = job.progress.withLock { progress -> ReplayJob.Status? in
                progress.queued -= count
                progress.stranded += count
                return progress.finalStatusIfSettled
            }
            if let finalStatus {
                self.finish(job, status: finalStatus)
            }
        }
        self.save()
    }

    /// Adds jobs read back from the file at start-up, without saving.
    func restore(_ restored: [ReplayJob]) {
        self.jobs.withLock { jobs in
            for job in restored {
                jobs[job.id] = job
            }
        }
    }

    /// Queues a write of the file with every job as it is when the write starts.
    func save() {
        guard self.file != nil else { return }
        guard !self.isSaveQueued.exchange(true, ordering: .acquiringAndReleasing) else { return }
        self.saves.async {
            self.isSaveQueued.store(false, ordering: .releasing)
            self.write()
        }
    }

    /// Waits until every queued save has been written, as a stop does.
    func flush() {
        self.saves.sync {}
    }

    /// Drops the oldest finished jobs past `maxFinishedJobs` and writes every job to the file. A failed write is
    /// logged and the job goes on, since the deliveries it queued are journaled either way.
    private func write() {
        guard let file = self.file else { return }
        let retained = self.jobs.withLock { jobs -> [ReplayJob] in
            let finished = jobs.values.filter(\.isFinished).sorted { $0.createdAtMs > $1.createdAtMs }
            for job in finished.dropFirst(Self.maxFinishedJobs) {
                jobs.removeValue(forKey: job.id)
            }
            return Array(jobs.values)
        }
        do {
            try file.save(retained)
        } catch {
            self.logger.warning(
                "replay jobs not saved",
                ["path": .string(file.path), "error": .string(error.description),
                 "effect": "a restart may forget a job or its status; its journaled deliveries still resume"])
        }
    }

    func job(_ id: String) -> ReplayJob? {
        self.jobs.withLock { $0[id] }
    }

    var unfinishedCount: Int {
        self.jobs.withLock { Self.unfinishedCount(of: $0.values) }
    }

    static func unfinishedCount(of jobs: some Sequence<ReplayJob>) -> Int {
        jobs.count { !$0.isFinished }
    }

    /// Returns every job, newest first, and by id among jobs created in the same millisecond, so that pages
    /// of the list follow one order.
    func all() -> [ReplayJob] {
        self.jobs.withLock { Array($0.values) }.sorted { ($0.createdAtMs, $0.id) > ($1.createdAtMs, $1.id) }
    }

    /// Counts a settled attempt of a job's delivery; called on the delivery thread. A stranded delivery settles
    /// after a reload or a start configured its destination again, and it moves from `notConfigured` to `queued`.
    func settled(replayID: String, outcome: AttemptOutcome, wasStranded: Bool) {
        guard let job = self.job(replayID) else { return }
        var changedFinishedJob = false
        let finalStatus = job.progress.withLock { progress -> ReplayJob.Status? in
            if outcome.isFinal && wasStranded && progress.stranded > 0 {
                progress.stranded -= 1
                progress.queued += 1
            }
            // A finished job's file entry is otherwise saved only at a change of status.
            changedFinishedJob = outcome.isFinal && progress.status != .running && progress.status != .scanning
            switch outcome {
            case .delivered: progress.delivered += 1
            case .deadLettered: progress.deadLettered += 1
            case .cancelled: progress.withdrawn += 1
            case .retryScheduled: return nil
            }
            if progress.inFlightAtCancel > 0 {
                progress.inFlightAtCancel -= 1
                if progress.inFlightAtCancel == 0 && progress.status == .running {
                    return .cancelled
                }
            }
            return progress.finalStatusIfSettled
        }
        if let finalStatus {
            self.finish(job, status: finalStatus)
        } else if changedFinishedJob {
            self.save()
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
        self.save()
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
    /// Set once the relay begins to stop. Work cut short then leaves its job as it was, for the next start to
    /// carry on, instead of failing it.
    private let stopping = Atomic<Bool>(false)
    private let historyReads = Atomic<Int>(0)

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

    /// The maximum number of delivery history reads queued or running at once. Each reads the whole journal on
    /// the scan queue, so more would hold up replays and retention behind a dashboard that polls.
    static let maxHistoryReads = 2

    /// The delivery history reads queued or running now.
    var queuedHistoryReads: Int {
        self.historyReads.load(ordering: .relaxed)
    }

    /// Reads a page of delivery histories. It takes the scan queue like a replay, so that the reads of the
    /// journal that admin requests start run one at a time and never beside a retention pass. Returns false,
    /// and reads nothing, while `maxHistoryReads` reads are queued or running.
    func history(
        _ filter: DeliveryFilter, after: DeliveryKey?, limit: Int,
        completion: @escaping @Sendable (Result<DeliveryHistory.Page, ReplayScan.Failure>) -> Void
    ) -> Bool {
        guard self.historyReads.add(1, ordering: .relaxed).newValue <= Self.maxHistoryReads else {
            self.historyReads.subtract(1, ordering: .relaxed)
            return false
        }
        let dataDirectory = self.dataDirectory
        self.scans.async {
            defer { self.historyReads.subtract(1, ordering: .relaxed) }
            // Requests queued behind others when the stop began get their response at once, not after a read each.
            guard !self.stopping.load(ordering: .relaxed) else {
                return completion(.failure(.stopped))
            }
            completion(DeliveryHistory.page(dataDirectory: dataDirectory, filter: filter, after: after, limit: limit) {
                self.stopping.load(ordering: .relaxed)
            })
        }
        return true
    }

    /// Starts a replay: scans the journal on a background queue, then queues the matches. Returns nil, and
    /// starts nothing, when `maxUnfinishedJobs` jobs are unfinished.
    func startReplay(_ filter: DeliveryFilter) -> ReplayJob? {
        let job = ReplayJob(kind: "replay", filter: filter)
        guard self.registry.add(job) else { return nil }
        self.scan(job)
        return job
    }

    private func scan(_ job: ReplayJob) {
        let dataDirectory = self.dataDirectory
        let filter = job.filter
        self.scans.async {
            let result = ReplayScan.run(dataDirectory: dataDirectory, filter: filter) {
                job.progress.withLock { $0.isCancelRequested } || self.stopping.load(ordering: .relaxed)
            }
            switch result {
            case .success(let found):
                job.progress.withLock { $0.scannedRecords = found.scannedRecords }
                self.queue(found.matches, for: job)
            case .failure(.stopped) where !job.progress.withLock({ $0.isCancelRequested }):
                self.registry.logger.info(
                    "replay scan interrupted by the stop",
                    ["replay": .string(job.id), "effect": "it runs again at the next start"])
            case .failure(.stopped):
                self.finish(job, status: .cancelled)
            case .failure(let failure):
                self.finish(job, status: .failed, error: failure.description)
            }
        }
    }

    /// Starts a redelivery of dead letters already chosen from the list, which needs no scan. Returns nil, as
    /// `startReplay` does, when too many jobs are unfinished.
    func startRedelivery(_ chosen: [DeadLetter], filter: DeliveryFilter, byIDs: Bool) -> ReplayJob? {
        let job = ReplayJob(kind: "redelivery", filter: filter, deadLetterIDs: byIDs ? chosen.map(\.id) : [])
        guard self.registry.add(job) else { return nil }
        let matches = chosen.map { ReplayScan.Match(event: $0.event, destination: $0.destination) }
        self.scans.async {
            self.queue(matches, for: job)
        }
        return job
    }

    /// Journals a replay record for every match whose destination is configured, then hands those deliveries to
    /// the engine. Until the engine has them, their segments are pinned against retention.
    func queue(_ matches: [ReplayScan.Match], for job: ReplayJob) {
        guard !self.stopping.load(ordering: .relaxed) else { return }
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
            ReplayRecord(replayID: job.id, destination: $0.destination, event: $0.event, atMs: now)
        }
        // Encoded here rather than on the delivery thread, which only queues them.
        let entries = self.journal.encode(records.map(JournalRecord.replay))
        self.engine.openReplayWindow { running in
            guard running else {
                // The engine has stopped, so the relay is stopping: the next start scans the job again.
                self.inTransit.withLock { _ = $0.removeValue(forKey: job.id) }
                return
            }
            self.journal.appendAll(encoded: entries) { result in
                self.submit(records, for: job, journaled: result)
            }
        }
    }

    /// Hands a replay's journaled deliveries to the engine, or fails the job if they could not be journaled.
    private func submit(
        _ records: [ReplayRecord], for job: ReplayJob, journaled result: Result<JournalLocation, JournalError>
    ) {
        if case .failure(let error) = result {
            self.engine.closeReplayWindow()
            self.inTransit.withLock { _ = $0.removeValue(forKey: job.id) }
            // When the stop has closed the journal, the job stays as it was, and the next start scans it again.
            guard !self.stopping.load(ordering: .relaxed) else { return }
            return self.finish(job, status: .failed, error: "the replay could not be journaled: \(error.description)")
        }
        for record in records {
            self.deadLetters.suspend(DeliveryKey(sequence: record.event.sequence, destination: record.destination))
        }
        let deliveries = records.map {
            PendingDelivery(event: $0.event, destination: $0.destination, replayID: job.id, sinceMs: $0.atMs)
        }
        self.engine.submitReplay(deliveries, records: records) { submission in
            self.inTransit.withLock { _ = $0.removeValue(forKey: job.id) }
            // The engine stopped first. The deliveries are journaled, so the next start carries the job on.
            guard let submission else { return }
            let (done, cancelRequested) = job.progress.withLock { progress in
                progress.queued = submission.queued
                progress.alreadyPending = submission.alreadyPending
                progress.stranded += submission.stranded
                if progress.status == .scanning {
                    progress.status = .running
                }
                return (progress.settled >= progress.queued, progress.isCancelRequested)
            }
            self.registry.save()
            if cancelRequested {
                // The cancel arrived while the matches were being journaled, before there was anything to
                // withdraw.
                self.engine.cancelReplay(job.id) { cancelled in self.finishCancelled(job, inFlight: cancelled?.inFlight ?? 0) }
            } else if done {
                self.finish(job, status: .completed)
            }
        }
    }

    /// Carries on the jobs a restart found unfinished: scans that had queued nothing run again, and jobs that
    /// are done or cannot go on are finished.
    func resume(_ restart: ReplayRestart, logger: Logger) {
        for job in restart.rescans {
            logger.info(
                "replay scan restarted", ["replay": .string(job.id), "reason": "the relay stopped during the scan"])
            self.scan(job)
        }
        for (job, status, error) in restart.finished {
            self.finish(job, status: status, error: error)
        }
        // Their pending deliveries were withdrawn before the engine started.
        for job in restart.cancels where !job.isFinished {
            self.finish(job, status: .cancelled)
        }
        // The start counted every job from the journal. Saved now, because retention may later remove the records
        // that the counts came from.
        if !restart.jobs.isEmpty {
            self.registry.save()
        }
    }

    /// Leaves interrupted jobs as they are from now on. The relay calls it first when it stops. A scan in progress
    /// ends on its own and changes nothing, so the stop does not wait for it to read the rest of the journal.
    func stop() {
        self.stopping.store(true, ordering: .relaxed)
    }

    /// The outcome of a cancellation request.
    enum CancelRequest: Equatable {
        /// The request was accepted: a scan stops, and queued deliveries are withdrawn.
        case accepted
        case alreadyCancelled
        /// The job completed or failed with nothing left to withdraw.
        case finished(ReplayJob.Status)
    }

    /// Requests cancellation: a scan stops, and queued deliveries that have not gone out are withdrawn.
    /// `completion` gets `accepted` once the withdrawals are done, or at once the reason nothing was done.
    func cancel(_ job: ReplayJob, completion: @escaping @Sendable (CancelRequest) -> Void) {
        let (request, wasScanning) = job.progress.withLock { progress -> (CancelRequest, Bool) in
            switch progress.status {
            case .cancelled:
                return (.alreadyCancelled, false)
            case .failed:
                return (.finished(.failed), false)
            case .completed where progress.stranded == 0:
                return (.finished(.completed), false)
            case .completed:
                // Deliveries of it wait for a destination no longer configured. It runs again until they are
                // withdrawn, and then finishes as cancelled.
                progress.status = .running
                progress.finishedAtMs = nil
            case .scanning, .running:
                break
            }
            progress.isCancelRequested = true
            return (.accepted, progress.status == .scanning)
        }
        guard request == .accepted else { return completion(request) }
        self.registry.save()
        guard !wasScanning else { return completion(.accepted) }
        self.engine.cancelReplay(job.id) { cancelled in
            self.finishCancelled(job, inFlight: cancelled?.inFlight ?? 0)
            completion(.accepted)
        }
    }

    /// Finishes a job whose waiting deliveries the engine withdrew: at once, or, with `inFlight` attempts still
    /// under way, when the last of them settles. While the engine runs, this is called on the delivery thread,
    /// so none of them can settle before the count is set.
    private func finishCancelled(_ job: ReplayJob, inFlight: Int) {
        job.progress.withLock { $0.inFlightAtCancel = inFlight }
        if inFlight == 0 {
            self.finish(job, status: .cancelled)
        }
    }
}
