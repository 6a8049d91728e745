import Foundation
import PortoutCore
import PortoutDelivery
import PortoutHTTP
import PortoutJournal
import Synchronization

/// A running relay: journal, delivery engine and HTTP server, started from one configuration.
public final class Relay: Sendable {
    let currentConfig: Locked<RelayConfig>
    let journal: Journal
    let ingestor: Ingestor
    let readAPI: PortOutReadAPI
    let adminSettings: AdminRequestHandler.AdminSettings
    let stalled: StalledPortOuts
    let operational: OperationalWebhook
    let replays: ReplayJobs
    let store: PortOutStore
    let deadLetters: DeadLetterIndex
    /// Signalled at shutdown to end the retention thread's wait.
    let retentionStop = DispatchSemaphore(value: 0)
    let engine: DeliveryEngine
    let server: HTTPServer
    let adminServer: HTTPServer
    private let upstreamClient: HTTPClient
    let logger: Logger
    public let port: Int
    /// The admin listener's port, which differs from the configured one when that was 0.
    public let adminPort: Int

    /// The error `init` throws when `stopRequested` is true once the journal is recovered, or just before the
    /// listeners open. The journal is closed again, and nothing was delivered.
    public struct StopRequestedDuringStart: Error {}

    /// Recovers the journal, rebuilds dedupe state, resumes unsettled deliveries and starts listening.
    /// `stopRequested` is asked once recovery, the long part of a start, is over, and again before listening.
    public init(config: RelayConfig, logger: Logger, stopRequested: () -> Bool = { false }) throws {
        self.currentConfig = Locked(config)
        self.logger = logger
        let startedAt = WallClock.milliseconds()
        let journalDirectory = config.dataDir + "/journal"
        var state = IngestState(capacity: config.dedupe.capacity)
        state.reserveCapacity(Self.estimatedEvents(journalDirectory: journalDirectory))
        var unsettled = UnsettledDeliveries()
        let portOutLane = PortOutIndex.RecoveryBuilder()
        let deadLetters = DeadLetterIndex()
        var order = EventSequenceCheck()
        var goneDestinations = GoneDestinations()
        // A dead letter of an event that retention removed is not listed, because without the event it cannot be
        // sent again.
        var removedEvents = RemovedEventCheck()
        let journal = try Journal.open(
            directory: journalDirectory, segmentBytes: config.journal.segmentBytes, logger: logger,
            // The subscription is the port-out index's, built on the lane, and an id and type matter only to an
            // event that is delivered.
            includeBodies: false, omitting: [.undeliveredIDAndType, .subscription], metrics: JournalMetrics(),
            lane: portOutLane
        ) { record, location in
            switch record {
            case .event(let event):
                removedEvents.note(event.sequence)
                order.note(event.sequence)
                state.restore(event)
                unsettled.add(event, at: location)
            case .attempt(let attempt):
                state.reserveSequences(through: attempt.eventSequence)
                goneDestinations.note(attempt)
                if let deadLetter = unsettled.apply(attempt) {
                    if !removedEvents.isRemoved(deadLetter.event.sequence) {
                        deadLetters.add(deadLetter)
                    }
                } else if attempt.outcome.isFinal {
                    deadLetters.replaySettled(
                        DeliveryKey(sequence: attempt.eventSequence, destination: attempt.destination),
                        outcome: attempt.outcome)
                }
            case .replay(let replay):
                state.reserveSequences(through: replay.event.sequence)
                unsettled.reopen(replay)
                deadLetters.suspend(DeliveryKey(sequence: replay.event.sequence, destination: replay.destination))
            }
        }
        let portOuts = portOutLane.index
        if let problem = order.takeProblem() {
            // The events are still restored: they carry the ids of the originals, so receivers that dedupe on
            // webhook-id drop what is sent again, while skipping them would lose any that are no copies.
            logger.error(
                "journal events out of sequence",
                ["problem": .string(problem), "effect": "copies of events are delivered again",
                 "action": "run portout-relay journal verify to find the segment, and move a copied segment out of the journal"])
        }
        var pending = unsettled.pendingDeliveries()
        let configuredKeys = DeliveryEngine.keys(of: config.tenants)
        let unconfigured = Self.logUnconfigured(pending, configured: configuredKeys, logger: logger)
        logger.info(
            "state rebuilt",
            [
                "dedupeKeys": .number(Double(state.dedupe.count)),
                "nextSequence": .number(Double(state.nextSequence)),
                // Counted apart from the unsettled ones, as in the stop line.
                "unsettledDeliveries": .number(Double(pending.count - unconfigured)),
                "unconfiguredDeliveries": .number(Double(unconfigured)),
                "portOuts": .number(Double(portOuts.count)),
                "deadLetters": .number(Double(deadLetters.count)),
                "milliseconds": .number(Double(WallClock.milliseconds() - startedAt)),
            ])
        if stopRequested() {
            journal.close()
            throw StopRequestedDuringStart()
        }
        let operational = OperationalWebhook(config: config.operationalWebhook, logger: logger)
        let replayFile = ReplayJobFile(dataDirectory: config.dataDir)
        let replayRestart = ReplayRestart(
            saved: Self.savedReplays(replayFile, logger: logger), tallies: unsettled.replayTallies,
            pending: pending
        ) { configuredKeys.contains($0.destinationKey) }
        // Freed now rather than when init returns. With a million unsettled deliveries that took about 0.4 s after
        // "relay started", and a stop requested then waited for it.
        unsettled = UnsettledDeliveries()
        for job in replayRestart.recovered {
            logger.warning(
                "replay job recovered from the journal",
                ["replay": .string(job.id), "queued": .number(Double(job.progress.withLock { $0.queued })),
                 "reason": "its deliveries are pending but no saved job has its id; its filter is unknown"])
        }
        let replayRegistry = ReplayRegistry(
            logger: logger, file: replayFile, maxUnfinishedJobs: config.admin.maxUnfinishedReplays
        ) { job in
            operational.send(type: "replay.finished", data: job.jsonValue)
        }
        // Before the engine starts, so that the settlements of a restored job's deliveries are counted.
        replayRegistry.restore(replayRestart.jobs)
        let observer = RelayDeliveryObserver(
            journal: journal, deadLetters: deadLetters, replays: replayRegistry, operational: operational,
            logger: logger)
        let engine = DeliveryEngine(
            tenants: config.tenants, defaults: config.delivery, journal: journal, logger: logger,
            controlFile: config.dataDir + "/destinations.json", observer: observer, goneDestinations: goneDestinations)
        replayRestart.markStranded(&pending) { configuredKeys.contains($0.destinationKey) }
        engine.submit(replayRestart.withdrawingCancelled(pending, journal: journal, observer: observer))
        let replays = ReplayJobs(
            registry: replayRegistry, dataDirectory: config.dataDir, journal: journal, engine: engine,
            deadLetters: deadLetters)
        let store = PortOutStore(index: portOuts, journal: journal)
        let ingestMetrics = IngestMetrics()
        let ingestor = Ingestor(
            config: config, state: state, journal: journal, engine: engine, portOuts: store, logger: logger,
            metrics: ingestMetrics)
        let readAPI = PortOutReadAPI(tenants: config.tenants, store: store, logger: logger)
        let upstreamClient = HTTPClient(name: "upstream-client")
        let server = HTTPServer(
            configuration: HTTPServer.Configuration(
                host: config.listen.host, port: config.listen.port, eventLoops: config.eventLoops,
                limits: config.limits),
            handler: RelayRequestHandler(
                ingestor: ingestor, readAPI: readAPI,
                forwarder: PortOutForwarder(readAPI: readAPI, client: upstreamClient, logger: logger)),
            logger: logger)
        let stalled = StalledPortOuts(store: store, thresholds: config.stalledAfterSeconds)
        let metricsPage = MetricsPage(
            ingest: ingestMetrics, journal: journal, engine: engine, server: server, stalled: stalled,
            deadLetters: deadLetters, startedAtMs: startedAt)
        let adminSettings = AdminRequestHandler.AdminSettings(config.admin)
        var adminLimits = Limits()
        // Operators and a scraper need a few connections; a cap keeps idle ones from taking descriptors.
        adminLimits.maxConnections = 64
        let adminServer = HTTPServer(
            configuration: HTTPServer.Configuration(
                host: config.admin.listen.host, port: config.admin.listen.port, eventLoops: 1, limits: adminLimits),
            handler: AdminRequestHandler(
                settings: adminSettings, engine: engine, metrics: metricsPage, replays: replays, deadLetters: deadLetters,
                stalled: stalled, logger: logger),
            logger: logger)
        server.accessLog.store(config.accessLog, ordering: .relaxed)
        adminServer.accessLog.store(config.accessLog, ordering: .relaxed)
        do {
            // Asked again, since what follows recovery took half a second with 600,000 deliveries pending.
            if stopRequested() {
                throw StopRequestedDuringStart()
            }
            self.port = try server.start()
            do {
                self.adminPort = try adminServer.start()
            } catch {
                server.shutdown()
                throw error
            }
        } catch {
            upstreamClient.shutdown()
            operational.shutdown()
            engine.shutdown()
            journal.close()
            throw error
        }
        // Only once both listeners are up, so that a start that fails sends nothing and resumes no job. Requests
        // taken in between queue their deliveries and commands for the engine's thread.
        engine.start()
        replays.resume(replayRestart, logger: logger)
        self.adminServer = adminServer
        self.adminSettings = adminSettings
        self.operational = operational
        self.stalled = stalled
        self.replays = replays
        self.store = store
        self.deadLetters = deadLetters
        self.ingestor = ingestor
        self.readAPI = readAPI
        self.upstreamClient = upstreamClient
        self.journal = journal
        self.engine = engine
        self.server = server
        if config.journal.retentionSeconds != nil {
            self.startRetentionThread()
        }
        logger.info(
            "relay started",
            ["listen": .string(ListenAddress(host: config.listen.host, port: self.port).description),
             "adminListen": .string(ListenAddress(host: config.admin.listen.host, port: self.adminPort).description),
             "dataDir": .string(config.dataDir),
             "tenants": .number(Double(config.tenants.count)), "version": .string(RelayVersion.current),
             "pid": .number(Double(getpid()))])
    }

    /// Reads the replay jobs saved before this start. An unreadable file is logged and moved aside, so that the
    /// next save does not replace what an operator may want to inspect. If it cannot be moved, the log line reports
    /// that, and the next save replaces it. A file with some bad entries is copied aside in the same way and
    /// rewritten with the good ones, and each bad entry is logged.
    private static func savedReplays(_ file: ReplayJobFile, logger: Logger) -> [ReplayJob] {
        do {
            let (contents, copiedTo, copyError) = try file.loadForUpdate()
            for reason in contents.rejectedEntries {
                logger.error(
                    "replay job not restored",
                    ["path": .string(file.path), "error": .string(reason), "copiedTo": copiedTo.map { .string($0) } ?? .null,
                     "copyError": copyError.map { .string($0) } ?? .null,
                     "effect": "the job is not restored; journaled deliveries of its job still resume"])
            }
            return contents.jobs
        } catch {
            let movedTo = file.moveAside()
            logger.error(
                "replay jobs not restored",
                ["path": .string(file.path), "error": .string("\(error)"), "movedTo": movedTo.map { .string($0) } ?? .null])
            return []
        }
    }

    /// Logs one line for each destination that has unsettled deliveries and is no longer configured, and returns
    /// how many deliveries those destinations have. The engine keeps them, and a reload that configures the
    /// destination again sends them.
    private static func logUnconfigured(_ deliveries: [PendingDelivery], configured: Set<String>, logger: Logger) -> Int {
        // Counted by tenant and destination before the keys are joined, since joining one for each of what may
        // be a million deliveries allocated a string each time.
        var counts: [DestinationName: Int] = [:]
        for delivery in deliveries {
            counts[delivery.destinationName, default: 0] += 1
        }
        var unconfigured: [String: Int] = [:]
        for (destination, count) in counts where !configured.contains(destination.key) {
            unconfigured[destination.key] = count
        }
        for (destination, count) in unconfigured.sorted(by: { $0.key < $1.key }) {
            logger.warning(
                "unsettled deliveries for a destination that is not configured",
                ["destination": .string(destination), "pending": .number(Double(count)),
                 "action": "held; they go out once a reload or a restart configures the destination again"])
        }
        return unconfigured.values.reduce(0, +)
    }

    /// Estimates the events in an existing journal from its size, so the dedupe maps are sized once instead of
    /// rehashing as replay grows them. Records are rarely under 400 bytes, so this rarely overshoots.
    private static func estimatedEvents(journalDirectory: String) -> Int {
        Journal.diskUsage(directory: journalDirectory).bytes / 400
    }

    /// The configuration in effect, which a reload may have replaced.
    public var config: RelayConfig {
        self.currentConfig.withLock { $0 }
    }

    public func deliveryStatistics() -> [DestinationStatistics] {
        self.engine.statistics()
    }

    /// Stops accepting, responds to the requests already read, gives deliveries in flight the rest of
    /// `graceSeconds` (default: the configured `shutdownGraceSeconds`), then writes what the journal has queued.
    /// Nothing acknowledged is lost: deliveries still unsettled resume from the journal at the next start.
    public func shutdown(graceSeconds: Int? = nil) {
        let graceMs = Int64(graceSeconds ?? self.config.shutdownGraceSeconds) * 1000
        let deadline = WallClock.milliseconds() + graceMs
        self.retentionStop.signal()
        self.replays.stop()
        // Both listeners close and no new attempt starts before anything waits, so that a slow admin request
        // cannot keep webhooks coming in and deliveries going out for the whole grace period.
        self.adminServer.beginDraining()
        self.server.beginDraining()
        self.engine.stopStartingAttempts()
        self.adminServer.drain(timeoutMs: max(0, deadline - WallClock.milliseconds()))
        let unanswered = self.server.drain(timeoutMs: max(0, deadline - WallClock.milliseconds()))
        self.adminServer.shutdown()
        self.server.shutdown()
        self.upstreamClient.shutdown()
        self.engine.shutdown(graceMs: max(0, deadline - WallClock.milliseconds()))
        // The journal closes first, since its last completions list the last dead letters and finish replays, and
        // those events then get the rest of the grace period to reach the operational webhook.
        self.journal.close()
        self.operational.drain(timeoutMs: max(0, deadline - WallClock.milliseconds()))
        self.operational.shutdown()
        self.replays.registry.flush()
        let pending = self.engine.statistics().reduce(0) { $0 + $1.pending }
        let unconfigured = self.engine.unconfiguredStatistics().reduce(0) { $0 + $1.pending }
        self.logger.reportSuppressedLines()
        // The engine's count leaves out deliveries it settled whose outcome could not be journaled, which the next
        // start sends again. The failed writes show how far to trust it.
        self.logger.info(
            "relay stopped",
            ["connectionsCut": .number(Double(unanswered)), "unsettledDeliveries": .number(Double(pending)),
             "unconfiguredDeliveries": .number(Double(unconfigured)),
             "journalWriteFailures": .number(Double(self.journal.metrics.writeFailures.value))])
    }
}
