import Dispatch
import Foundation
import PortoutCore
import PortoutDelivery
import PortoutJournal
import Synchronization

/// A replay straight from the journal while the relay is stopped: it takes the journal's lock, queues the matches
/// like the admin API does, delivers them with the configured destinations and waits for them to settle. The
/// job is then saved with the relay's jobs, so that the relay lists it and finishes what is still unsettled.
///
/// The deliveries the journal shows as unsettled are queued first, as the relay would at start, so a replayed
/// status never overtakes an earlier one still pending for its port out. Deliveries still unsettled when the
/// wait ends stay unsettled in the journal, so the relay sends them when it starts.
struct OfflineReplay {
    let config: RelayConfig
    let dataDirectory: String
    let filter: DeliveryFilter
    let dryRun: Bool
    let waitSeconds: Double
    let progress: ReplayProgressPrinter

    func run() throws -> Int32 {
        // Before the journal's thread starts, so that it inherits the blocked SIGINT.
        let interrupt = InterruptWatch()
        defer { interrupt.stop() }
        if !self.dryRun {
            try self.checkOwner()
            RelayCommand.ignoreFileSizeSignal()
        }
        let logger = Logger(level: .warning)
        var unsettled = UnsettledDeliveries()
        var goneDestinations = GoneDestinations()
        let journal = try self.openJournal(logger: logger, unsettled: &unsettled, goneDestinations: &goneDestinations)
        defer { journal.close() }
        let pending = unsettled.pendingDeliveries()
        // Checked before the scan, which can take long on a large journal.
        let saved = self.dryRun ? .success([]) : self.savedJobs()
        let restart = self.restartOnCopies(of: (try? saved.get()) ?? [], tallies: unsettled.replayTallies, pending: pending)
        if !self.dryRun {
            // The jobs the next start would carry on: those it finishes at once do not count.
            let finishing = Set(restart.finished.map(\.job.id))
            let unfinished = restart.jobs.count { !$0.isFinished && !finishing.contains($0.id) }
            let limit = self.config.admin.maxUnfinishedReplays
            if unfinished >= limit {
                let error = AdminRequestHandler.tooManyReplays(unfinished: unfinished, limit: limit)
                throw CommandError(
                    "\(error.message) Start the relay and cancel one with DELETE /admin/replays/{id}, or wait for one to finish.")
            }
        }
        let matches: [ReplayScan.Match]
        let scannedRecords: Int
        switch ReplayScan.run(dataDirectory: self.dataDirectory, filter: self.filter) {
        case .failure(let failure): throw CommandError(failure.description)
        case .success(let found): (matches, scannedRecords) = found
        }
        if self.dryRun {
            self.progress.line(ReplayProgressPrinter.matching(matches.count))
            for match in matches.prefix(10) {
                self.progress.line(JSONWriter.encodeString(AdminRequestHandler.matchJSON(match)))
            }
            let controlFile = self.dataDirectory + "/destinations.json"
            let configured = DeliveryEngine.keys(of: self.config.tenants)
            let saved: [String: DestinationMode]
            do {
                saved = try DeliveryEngine.savedModes(controlFile: controlFile, configured: configured)
            } catch {
                self.progress.line(
                    "reading \(controlFile) failed: \(error). The next start of the relay pauses every destination.")
                saved = [:]
            }
            // A held destination that is no longer configured is not named: a replay skips its deliveries.
            let targeted = Set(matches.map { DeliveryEngine.key(tenant: $0.event.tenant, destination: $0.destination) })
            for key in targeted.sorted() where configured.contains(key) {
                if let mode = saved[key], mode != .active {
                    self.warnHeld(key, mode: mode)
                }
            }
            return 0
        }
        return try self.deliver(
            matches, scannedRecords: scannedRecords, pending: pending, restart: restart, saved: saved,
            journal: journal, goneDestinations: goneDestinations, logger: logger, interrupt: interrupt)
    }

    /// Refuses to write into a data directory that another user owns, as root would with a relay that runs as a
    /// service user. The job file and journal segments written would be the caller's, and the relay could then
    /// not read them: it would set the saved jobs aside, or fail to start.
    private func checkOwner() throws {
        var status = stat()
        guard stat(self.dataDirectory, &status) == 0 else { return }
        let user = geteuid()
        guard status.st_uid != user else { return }
        throw CommandError(
            "\(self.dataDirectory) belongs to user \(status.st_uid), and this command runs as user \(user). Run it as "
                + "the relay's user, so that the relay can read the files it writes (deploy/README.md shows how).")
    }

    /// Opens the journal, which recovers it as a start of the relay would, and takes its lock.
    private func openJournal(
        logger: Logger, unsettled: inout UnsettledDeliveries, goneDestinations: inout GoneDestinations
    ) throws -> Journal {
        var found = UnsettledDeliveries()
        var foundGoneDestinations = GoneDestinations()
        let result = Result { () throws(JournalError) -> Journal in
            try Journal.open(
                directory: self.dataDirectory + "/journal", segmentBytes: self.config.journal.segmentBytes,
                logger: logger, includeBodies: false
            ) { record, location in
                switch record {
                case .event(let event): found.add(event, at: location)
                case .attempt(let attempt):
                    _ = found.apply(attempt)
                    foundGoneDestinations.note(attempt)
                case .replay(let replay): found.reopen(replay)
                }
            }
        }
        unsettled = found
        goneDestinations = foundGoneDestinations
        if case .failure(let error) = result, error.reason == "the journal is in use by another process" {
            throw CommandError("the relay is running on \(self.dataDirectory); replay through it without --offline")
        }
        return try result.get()
    }

    /// Names each destination among `targeted` that is paused or disabled now and is not in `warned` yet.
    private func warnHeldDestinations(
        _ engine: DeliveryEngine, among targeted: Set<String>, warned: inout Set<String>
    ) {
        for statistics in engine.statistics().sorted(by: { ($0.tenant, $0.destination) < ($1.tenant, $1.destination) })
        where statistics.mode != .active {
            let key = DeliveryEngine.key(tenant: statistics.tenant, destination: statistics.destination)
            guard targeted.contains(key), warned.insert(key).inserted else { continue }
            self.warnHeld(key, mode: statistics.mode)
        }
    }

    private func warnHeld(_ destination: String, mode: DestinationMode) {
        self.progress.line(
            "destination \(destination) is \(mode.rawValue); its deliveries wait until it is resumed, after the relay starts")
    }

    /// How long attempts in flight when the wait ends get to finish before the command exits.
    static let shutdownGraceMs: Int64 = 5000

    /// How long the command waits for a replay's deliveries to be journaled and queued, before `--wait` starts.
    static let queueingLimitSeconds = 60.0

    /// Queues and sends the matches as a job, waits for them, and adds the job to `saved` in the file.
    private func deliver(
        _ matches: [ReplayScan.Match], scannedRecords: Int, pending: [PendingDelivery], restart: ReplayRestart,
        saved: Result<[ReplayJob], any Error>, journal: Journal, goneDestinations: GoneDestinations, logger: Logger,
        interrupt: InterruptWatch
    ) throws -> Int32 {
        let job = ReplayJob(kind: "replay", filter: self.filter)
        job.progress.withLock { $0.scannedRecords = scannedRecords }
        let registry = ReplayRegistry(logger: logger)
        registry.add(job)
        let observer = ReplayProgressObserver(registry: registry)
        let engine = DeliveryEngine(
            tenants: self.config.tenants, defaults: self.config.delivery, journal: journal, logger: logger,
            controlFile: self.dataDirectory + "/destinations.json", observer: observer,
            goneDestinations: goneDestinations)
        let configured = engine.configuredDestinations()
        // As at the relay's start, so that a replay cancelled before the stop sends nothing.
        engine.submit(restart.withdrawingCancelled(pending, journal: journal, observer: observer).filter {
            configured.contains($0.destinationKey)
        })
        engine.start()
        defer { engine.shutdown(graceMs: Self.shutdownGraceMs) }

        let jobs = ReplayJobs(
            registry: registry, dataDirectory: self.dataDirectory, journal: journal, engine: engine,
            deadLetters: DeadLetterIndex())
        jobs.queue(matches, for: job)
        self.progress.line("replay \(job.id): \(ReplayProgressPrinter.matching(matches.count))")
        let targeted = Set(matches.map { DeliveryEngine.key(tenant: $0.event.tenant, destination: $0.destination) })
        var heldDestinations = Set<String>()
        self.warnHeldDestinations(engine, among: targeted, warned: &heldDestinations)
        // `--wait` counts from when the deliveries are queued, because until then the job could be neither
        // reported nor listed.
        let queueingDeadline = Date().addingTimeInterval(Self.queueingLimitSeconds)
        while job.progress.withLock({ $0.status == .scanning }) && Date() < queueingDeadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        // Ctrl-C ends the wait early, and the job is still listed, so that the relay finishes it.
        interrupt.onInterrupt { [progress] count in
            if count > 1 { InterruptWatch.exitInterrupted() }
            progress.line("interrupted: listing the job; Ctrl-C again exits at once")
        }
        if !job.isFinished {
            self.progress.line("waiting up to \(Int(self.waitSeconds)) s; Ctrl-C ends the wait and lists the job")
        }
        let deadline = Date().addingTimeInterval(self.waitSeconds)
        while !job.isFinished && Date() < deadline && interrupt.count == 0 {
            self.show(job, final: false)
            Thread.sleep(forTimeInterval: 0.2)
        }
        self.show(job, final: true)
        // A destination that returned 410 during the wait is disabled now, and its deliveries wait for a resume.
        self.warnHeldDestinations(engine, among: targeted, warned: &heldDestinations)

        let progress = job.progress.withLock { $0 }
        if !job.isFinished {
            let verb = progress.queued - progress.settled == 1 ? "is" : "are"
            let state = heldDestinations.isEmpty ? "\(verb) in flight or retrying" : "\(verb) held, in flight or retrying"
            let moment = interrupt.count > 0 ? "at the interrupt" : "after \(Int(self.waitSeconds)) s"
            let heldNote = heldDestinations.isEmpty ? "" : ", those to a held destination once it is resumed"
            self.progress.line(
                "\(ReplayProgressPrinter.deliveries(progress.queued - progress.settled)) \(state) \(moment); "
                    + "attempts in flight get \(Self.shutdownGraceMs / 1000) s to finish, and the rest go out when the "
                    + "relay starts" + heldNote)
        }
        if progress.alreadyPending > 0 {
            self.progress.line(
                "\(ReplayProgressPrinter.deliveries(progress.alreadyPending)) left out: the same event was still pending for the destination")
        }
        if progress.notConfigured > 0 {
            self.progress.line(
                "\(ReplayProgressPrinter.deliveries(progress.notConfigured)) skipped: the destination is not configured")
        }
        self.list(job, with: saved)
        // The job is listed, so a Ctrl-C from here on only cuts short the grace that attempts in flight get.
        let interruptsSoFar = interrupt.count
        interrupt.onInterrupt { count in
            if count > interruptsSoFar { InterruptWatch.exitInterrupted() }
        }
        if interruptsSoFar > 0 {
            return 130
        }
        return progress.status == .completed && progress.deadLettered == 0 && progress.notConfigured == 0 ? 0 : 1
    }

    /// Brings copies of the saved jobs up to date with the journal, with the relay's start's own rules, so that
    /// the limit counts the jobs that start would carry on and cancelled replays are known. Copies, so that
    /// `saved` is listed again as it was read.
    private func restartOnCopies(
        of saved: [ReplayJob], tallies: [String: ReplayTally], pending: [PendingDelivery]
    ) -> ReplayRestart {
        let copies = saved.map {
            ReplayJob(id: $0.id, kind: $0.kind, filter: $0.filter, createdAtMs: $0.createdAtMs, progress: $0.progress.withLock { $0 })
        }
        let configured = DeliveryEngine.keys(of: self.config.tenants)
        return ReplayRestart(saved: copies, tallies: tallies, pending: pending) { configured.contains($0.destinationKey) }
    }

    /// Reads the relay's saved jobs, and reports each entry left out, or moves an unreadable file aside, as the
    /// relay's start would.
    private func savedJobs() -> Result<[ReplayJob], any Error> {
        let file = ReplayJobFile(dataDirectory: self.dataDirectory)
        do {
            let (contents, copiedTo, copyError) = try file.loadForUpdate()
            for reason in contents.rejectedEntries {
                let copy = copiedTo.map { "copied to \($0)" } ?? "not copied aside"
                let failure = copyError.map { "; \($0)" } ?? ""
                self.progress.line("\(file.path): \(reason), so it is left out (file \(copy)\(failure))")
            }
            return .success(contents.jobs)
        } catch {
            guard let movedTo = file.moveAside() else { return .failure(error) }
            self.progress.line("\(file.path) could not be read (\(error)), so its jobs are left out; it was moved to \(movedTo)")
            return .success([])
        }
    }

    /// Adds the job to the relay's saved jobs once its deliveries are queued, so that the relay lists it and
    /// carries it on. A replay stopped before then is not listed, and its journaled deliveries still go out.
    private func list(_ job: ReplayJob, with saved: Result<[ReplayJob], any Error>) {
        let file = ReplayJobFile(dataDirectory: self.dataDirectory)
        // Saved while scanning, the relay would scan it again at start and send every match a second time.
        guard job.progress.withLock({ $0.status }) != .scanning else {
            return self.progress.line("replay \(job.id) is not listed, because its deliveries were not queued in time")
        }
        do {
            try file.save(try saved.get() + [job])
            self.progress.line("listed as \(job.id) in \(file.path)")
        } catch {
            self.progress.line(
                "replay \(job.id) is not listed, because \(file.path) could not be updated: \(error). Its deliveries are journaled either way.")
        }
    }

    private func show(_ job: ReplayJob, final: Bool) {
        let progress = job.progress.withLock { $0 }
        guard progress.status != .scanning else { return }
        self.progress.update(
            queued: progress.queued, delivered: progress.delivered, deadLettered: progress.deadLettered,
            withdrawn: progress.withdrawn, final: final)
    }
}

/// Counts replay progress; an offline replay keeps no dead-letter list and sends no operational events.
struct ReplayProgressObserver: DeliveryObserver {
    let registry: ReplayRegistry

    func settled(_ delivery: PendingDelivery, attempt: AttemptRecord) {
        if let replayID = delivery.replayID {
            self.registry.settled(replayID: replayID, outcome: attempt.outcome, wasStranded: delivery.isStranded)
        }
    }

    func destinationDisabled(tenant: String, destination: String, reason: String) {}

    func journaled(_ changes: [DeadLetterChange]) {}

    /// Counts stranded deliveries as the relay does, though an offline replay never reloads its configuration.
    func stranded(_ waiting: [String: Int]) {
        self.registry.strand(waiting)
    }
}
