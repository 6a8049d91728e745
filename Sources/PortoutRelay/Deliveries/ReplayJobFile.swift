import Foundation
import PortoutCore
import PortoutDelivery
import PortoutJournal

/// The replay jobs of a relay, saved in `replays.json` in the data directory so that jobs, and scans that had not
/// finished, survive a restart.
///
/// The file is replaced whole at each change of a job's status, which operators cause rarely. Counts of settled
/// deliveries are saved then too, and a restart takes them from the journal instead (`ReplayTally`).
struct ReplayJobFile: Sendable {
    let path: String

    init(dataDirectory: String) {
        self.path = dataDirectory + "/replays.json"
    }

    /// The jobs read from the file, and why each entry that could not be taken was left out.
    struct Contents {
        var jobs: [ReplayJob] = []
        var rejectedEntries: [String] = []
    }

    /// Reads the saved jobs, oldest first. A missing file means there are none. An entry that is not a complete
    /// job is left out and named in `rejectedEntries`, so that one bad entry does not cost the others.
    func load() throws -> Contents {
        try self.read().contents
    }

    /// Reads the file once, returning its bytes beside what they hold, so that a copy is of what was read.
    private func read() throws -> (contents: Contents, bytes: [UInt8]) {
        guard let bytes = try DurableFile.read(path: self.path) else { return (Contents(), []) }
        guard let entries = try JSONParser.parse(bytes).objectValue?["replays"]?.arrayValue else {
            throw ControlFileError(path: self.path, reason: "the file has no \"replays\" array")
        }
        var contents = Contents()
        var ids: Set<String> = []
        for (index, entry) in entries.enumerated() {
            switch Self.job(from: entry) {
            case .failure(let reason):
                contents.rejectedEntries.append("replays[\(index)] \(reason)")
            case .success(let job) where !ids.insert(job.id).inserted:
                contents.rejectedEntries.append("replays[\(index)] repeats the id \(job.id) of an earlier entry")
            case .success(let job):
                contents.jobs.append(job)
            }
        }
        return (contents, bytes)
    }

    /// Reads the saved jobs for a process that will save them again. When some entries were left out, the file is
    /// copied aside and then rewritten with the good entries only. A copy made earlier of the same bytes is used
    /// again, so that a file whose rewrite keeps failing, such as an immutable one, is not copied at every start.
    /// If no copy can be written, as on a full disk, the file is renamed aside instead, since the next save would
    /// otherwise replace it. `copiedTo` is the copy's path, or nil when no copy was needed or none could be made.
    /// `copyError` names what failed, copying or rewriting.
    func loadForUpdate() throws -> (contents: Contents, copiedTo: String?, copyError: String?) {
        let (contents, bytes) = try self.read()
        guard !contents.rejectedEntries.isEmpty else { return (contents, nil, nil) }
        let copy: String
        if let earlier = self.copyAside(of: bytes) {
            copy = earlier
        } else {
            copy = self.asideName()
            do {
                try DurableFile.replace(path: copy, with: bytes)
            } catch {
                guard let movedTo = self.moveAside() else {
                    return (contents, nil, "copying failed, and so did renaming the file: \(error)")
                }
                try? self.save(contents.jobs)
                return (contents, movedTo, "copying failed, so the file was renamed instead: \(error)")
            }
        }
        // Once the copy is safe, the file keeps only the good entries, so the next start does not copy and
        // report the same entries again.
        do {
            try self.save(contents.jobs)
        } catch {
            return (contents, copy, "rewriting the file failed: \(error)")
        }
        return (contents, copy, nil)
    }

    func save(_ jobs: [ReplayJob]) throws(SystemError) {
        let entries = jobs.sorted { $0.createdAtMs < $1.createdAtMs }.map(Self.entry(for:))
        try DurableFile.replace(path: self.path, with: JSONWriter.encode(["replays": .array(entries)]))
    }

    private static func entry(for job: ReplayJob) -> JSONValue {
        let progress = job.progress.withLock { $0 }
        var object = JSONObject([
            ("id", .string(job.id)), ("kind", .string(job.kind)), ("filter", job.filter.jsonValue),
        ] + job.idMembers + [
            ("createdAtMs", .number(Double(job.createdAtMs))), ("status", .string(progress.status.rawValue)),
            ("cancelRequested", .bool(progress.isCancelRequested)),
        ])
        object["stranded"] = .number(Double(progress.stranded))
        object["finishedAtMs"] = progress.finishedAtMs.map { .number(Double($0)) } ?? .null
        object["error"] = progress.error.map { .string($0) } ?? .null
        for (name, field) in ReplayJob.Progress.countFields {
            object[name] = .number(Double(progress[keyPath: field]))
        }
        return .object(object)
    }

    /// Renames an unreadable file out of the way, so that the next save does not replace what an operator may
    /// want to inspect. Returns the new name, or nil if the rename failed and the next save replaces the file.
    func moveAside() -> String? {
        DurableFile.moveAside(path: self.path)
    }

    /// Returns the path of a copy beside the file that has exactly `bytes`, or nil if there is none.
    private func copyAside(of bytes: [UInt8]) -> String? {
        let file = URL(fileURLWithPath: self.path)
        let directory = file.deletingLastPathComponent().path
        let prefix = file.lastPathComponent + ".unreadable-"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        // A name ending in `.tmp` is a copy that was never finished.
        for name in names.sorted() where name.hasPrefix(prefix) && !name.hasSuffix(".tmp") {
            let candidate = directory + "/" + name
            if (try? DurableFile.read(path: candidate)) == bytes {
                return candidate
            }
        }
        return nil
    }

    /// Returns a fresh name beside the file each time, so that no earlier copy is replaced.
    private func asideName() -> String {
        DurableFile.asideName(for: self.path)
    }

    /// Reads one entry, or returns what is wrong with it, worded to follow its JSON path, such as `replays[3]`.
    private static func job(from entry: JSONValue) -> Result<ReplayJob, EntryFault> {
        guard let object = entry.objectValue, let id = object["id"]?.stringValue, !id.isEmpty,
            let kind = object["kind"]?.stringValue, let filterObject = object["filter"]?.objectValue,
            let createdAtMs = object["createdAtMs"]?.intValue,
            let status = object["status"]?.stringValue.flatMap(ReplayJob.Status.init(rawValue:))
        else { return .failure(EntryFault("is not a complete job")) }
        guard ReplayJob.kinds.contains(kind) else {
            return .failure(EntryFault("has kind \(kind), not one of \(ReplayJob.kinds.joined(separator: ", "))"))
        }
        // A field this version does not know, perhaps written by a later one, would otherwise be dropped, and a
        // scan run again would then replay more than was asked for.
        if let unknown = filterObject.keys.first(where: { !DeliveryFilter.fieldNames.contains($0) }) {
            return .failure(EntryFault("has an invalid filter: \(unknown) is not a filter field"))
        }
        let filter: DeliveryFilter
        switch DeliveryFilter.parse({ filterObject[$0] }) {
        case .failure(let failure):
            let fields = failure.issues.map { "\($0.field) \($0.message)" }.joined(separator: ", ")
            return .failure(EntryFault("has an invalid filter: \(fields)"))
        case .success(let parsed) where parsed.isEmpty && kind != ReplayJob.recoveredKind:
            // The admin API requires a field, and an empty filter would replay every delivery in the journal. A
            // recovered job's filter is unknown, and such a job never scans.
            return .failure(EntryFault("has an empty filter"))
        case .success(let parsed):
            filter = parsed
        }
        var ids: [String] = []
        var idCount = 0
        if object["ids"] != nil || object["idCount"] != nil {
            let listed = object["ids"]?.arrayValue?.compactMap(\.stringValue)
            guard kind == "redelivery", let listed, listed.count == object["ids"]?.arrayValue?.count,
                listed.count <= ReplayJob.maxListedIDs, let count = object["idCount"]?.intValue,
                (max(listed.count, 1)...Self.maxCount).contains(count),
                count == listed.count || listed.count == ReplayJob.maxListedIDs
            else {
                return .failure(EntryFault(
                    "has invalid ids: only a redelivery has them, as up to \(ReplayJob.maxListedIDs) strings "
                        + "and their count"))
            }
            (ids, idCount) = (listed, count)
        }
        var progress = ReplayJob.Progress()
        progress.status = status
        progress.isCancelRequested = object["cancelRequested"]?.boolValue ?? false
        progress.finishedAtMs = object["finishedAtMs"]?.intValue.map(Int64.init)
        progress.error = object["error"]?.stringValue
        let counts = [("stranded", \ReplayJob.Progress.stranded)] + ReplayJob.Progress.countFields
        for (name, field) in counts {
            guard let value = object[name] else { continue }
            // Counts are added together when a job is reported or carried on, so a huge one would overflow.
            guard let count = value.intValue, (0...Self.maxCount).contains(count) else {
                return .failure(EntryFault("has \(name) \(JSONWriter.encodeString(value)), not an integer from 0 to \(Self.maxCount)"))
            }
            progress[keyPath: field] = count
        }
        return .success(ReplayJob(
            id: id, kind: kind, filter: filter, deadLetterIDs: ids, deadLetterIDCount: idCount,
            createdAtMs: Int64(createdAtMs), progress: progress))
    }

    /// The largest count an entry may hold, far above any real count and far below overflow.
    static let maxCount = 1 << 48

    private struct EntryFault: Error, CustomStringConvertible {
        let description: String

        init(_ description: String) {
            self.description = description
        }
    }
}

/// The settled deliveries of one replay, counted from the journal's attempt records at start-up.
struct ReplayTally: Sendable, Equatable {
    var delivered = 0
    var deadLettered = 0
    var withdrawn = 0

    var settled: Int {
        self.delivered + self.deadLettered + self.withdrawn
    }

    mutating func count(_ outcome: AttemptOutcome) {
        switch outcome {
        case .delivered: self.delivered += 1
        case .deadLettered: self.deadLettered += 1
        case .cancelled: self.withdrawn += 1
        case .retryScheduled: break
        }
    }
}

/// The actions a restart takes on the saved jobs, once the journal has been read.
struct ReplayRestart {
    /// Every saved job, brought up to date with the journal.
    var jobs: [ReplayJob] = []
    /// Replays that were still scanning, with nothing queued: their scan runs again.
    var rescans: [ReplayJob] = []
    /// Jobs whose deliveries have all settled, or that can no longer go on, with the status to finish them with.
    var finished: [(job: ReplayJob, status: ReplayJob.Status, error: String?)] = []
    /// Jobs whose cancellation was requested or done before the stop and that still have deliveries pending.
    var cancels: [ReplayJob] = []
    /// Jobs made for replays whose deliveries are pending in the journal but which have no saved job, because
    /// `replays.json` could not be written, its entry was left out, or an offline replay stopped before saving
    /// it. They are in `jobs` too.
    var recovered: [ReplayJob] = []

    /// Brings `saved` up to date. `pending` are the deliveries the journal shows as unsettled, and `configured`
    /// returns whether a delivery's destination is still configured, so that the engine will take it.
    init(
        saved: [ReplayJob], tallies: [String: ReplayTally], pending: [PendingDelivery],
        configured: (PendingDelivery) -> Bool
    ) {
        var remaining: [String: (configured: Int, unconfigured: Int)] = [:]
        for delivery in pending {
            guard let replayID = delivery.replayID else { continue }
            if configured(delivery) {
                remaining[replayID, default: (0, 0)].configured += 1
            } else {
                remaining[replayID, default: (0, 0)].unconfigured += 1
            }
        }
        self.recovered = Self.recoveredJobs(saved: saved, pending: pending)
        for job in saved + self.recovered {
            self.jobs.append(job)
            let tally = tallies[job.id] ?? ReplayTally()
            let (waiting, stranded) = remaining[job.id] ?? (0, 0)
            if job.isFinished {
                // The file is saved at a change of status, so settlements after the finish are read from the
                // journal: those of attempts in flight at a cancel, of stranded deliveries that went out, or made
                // by an offline replay. A job none of whose records are left, after retention, keeps the counts
                // it saved.
                if tally.settled + waiting + stranded > 0 {
                    job.progress.withLock { progress in
                        let journaled = tally.settled + waiting + stranded
                        let total = max(progress.queued + progress.stranded, journaled)
                        progress.stranded = stranded
                        progress.queued = total - stranded
                        progress.delivered = tally.delivered
                        progress.deadLettered = tally.deadLettered
                        progress.withdrawn = tally.withdrawn
                    }
                }
                // A cancellation whose withdrawals had not reached the journal when the relay stopped leaves the
                // deliveries pending. They are withdrawn again, so that they do not go out.
                let isCancelled = job.progress.withLock { $0.status == .cancelled }
                if isCancelled && waiting > 0 {
                    self.cancels.append(job)
                }
                continue
            }
            let hasJournaledDeliveries = tally.settled + waiting + stranded > 0
            let (status, isCancelRequested) = job.progress.withLock { ($0.status, $0.isCancelRequested) }
            if status == .scanning && !hasJournaledDeliveries {
                if isCancelRequested {
                    self.finished.append((job, .cancelled, nil))
                } else if job.kind == "replay" {
                    self.rescans.append(job)
                } else {
                    // A redelivery's chosen dead letters are not saved, so it cannot be queued again.
                    self.finished.append((job, .failed, Self.redeliveryLost))
                }
                continue
            }
            // The job's deliveries are in the journal, even if the stop came before its new status was saved.
            let (done, cancelRequested) = job.progress.withLock { progress -> (Bool, Bool) in
                progress.status = .running
                // `queued` left out the deliveries stranded at the last start, so they are counted afresh.
                let journaled = tally.settled + waiting + stranded
                progress.queued = max(progress.queued + progress.stranded, journaled) - stranded
                progress.stranded = stranded
                progress.delivered = tally.delivered
                progress.deadLettered = tally.deadLettered
                progress.withdrawn = tally.withdrawn
                // With nothing left pending, no settlement will come to finish the job. The journal may also
                // have lost some of its attempt records to retention, and the counts then fall short of `queued`.
                return (progress.settled >= progress.queued || waiting == 0, progress.isCancelRequested)
            }
            if done {
                self.finished.append((job, cancelRequested ? .cancelled : .completed, nil))
            } else if cancelRequested {
                self.cancels.append(job)
            }
        }
    }

    /// Makes a running job, with an unknown filter, for each replay id among `pending` that no saved job has.
    /// The restart then counts its deliveries as it does a saved job's, and the API can show and cancel it.
    private static func recoveredJobs(saved: [ReplayJob], pending: [PendingDelivery]) -> [ReplayJob] {
        let savedIDs = Set(saved.map(\.id))
        var firstQueuedAtMs: [String: Int64] = [:]
        for delivery in pending {
            guard let replayID = delivery.replayID, !savedIDs.contains(replayID) else { continue }
            // A replayed delivery's `acceptedAtMs` is when its replay queued it.
            firstQueuedAtMs[replayID] = min(firstQueuedAtMs[replayID] ?? .max, delivery.acceptedAtMs)
        }
        return firstQueuedAtMs.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.map { replayID, queuedAtMs in
            var progress = ReplayJob.Progress()
            progress.status = .running
            return ReplayJob(
                id: replayID, kind: ReplayJob.recoveredKind, filter: DeliveryFilter(), createdAtMs: queuedAtMs,
                progress: progress)
        }
    }

    static let redeliveryLost =
        "the relay stopped before this redelivery's dead letters were queued, so none was sent: start it again"

    /// Marks the replayed deliveries that their jobs count under `notConfigured`: those to destinations
    /// `configured` rejects. Changed in place: copying them all took about 50 ms per 200,000 restored
    /// deliveries, and most deliveries are not replayed ones.
    func markStranded(_ pending: inout [PendingDelivery], configured: (PendingDelivery) -> Bool) {
        for index in pending.indices where pending[index].replayID != nil && !configured(pending[index]) {
            pending[index].isStranded = true
        }
    }

    /// Withdraws the pending deliveries of replays whose cancellation was requested or done before the stop,
    /// to configured destinations or not, and returns the others. Each withdrawal is journaled and passed to
    /// `observer`, as the engine does with one.
    func withdrawingCancelled(
        _ pending: [PendingDelivery], journal: Journal, observer: some DeliveryObserver
    ) -> [PendingDelivery] {
        let cancelled = Set(self.jobs.filter { job in
            job.progress.withLock { $0.status == .cancelled || $0.isCancelRequested }
        }.map(\.id))
        guard !cancelled.isEmpty else { return pending }
        let now = WallClock.milliseconds()
        var deliverable: [PendingDelivery] = []
        var withdrawn: [(delivery: PendingDelivery, attempt: AttemptRecord)] = []
        for delivery in pending {
            guard let replayID = delivery.replayID, cancelled.contains(replayID) else {
                deliverable.append(delivery)
                continue
            }
            withdrawn.append((delivery, AttemptRecord.withdrawal(of: delivery, replayID: replayID, atMs: now)))
        }
        journal.appendAdvisory(withdrawn.map { .attempt($0.attempt) }) { _ in }
        for (delivery, attempt) in withdrawn {
            observer.settled(delivery, attempt: attempt)
        }
        // Passed on at once, not from the write's completion, because the engine has not started and so no
        // other change can come first. The write is advisory.
        observer.journaled(withdrawn.compactMap { DeadLetterChange($0.delivery, attempt: $0.attempt) })
        return deliverable
    }
}
