import Foundation
import PortoutCore
import PortoutDelivery
import PortoutHTTP
import PortoutJournal

/// A running relay: journal, delivery engine and HTTP server, started from one configuration.
public final class Relay: Sendable {
    public let config: RelayConfig
    private let journal: Journal
    private let engine: DeliveryEngine
    private let server: HTTPServer
    private let adminServer: HTTPServer
    private let upstreamClient: HTTPClient
    private let logger: Logger
    public let port: Int
    /// The admin listener's port, which differs from the configured one when that was 0.
    public let adminPort: Int

    /// Recovers the journal, rebuilds dedupe state, resumes unsettled deliveries and starts listening.
    public init(config: RelayConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        let startedAt = WallClock.milliseconds()
        let journalDirectory = config.dataDir + "/journal"
        var state = IngestState(capacity: config.dedupe.capacity)
        state.reserveCapacity(Self.estimatedEvents(journalDirectory: journalDirectory))
        var unsettled = UnsettledDeliveries()
        var portOuts = PortOutIndex()
        let journal = try Journal.open(
            directory: journalDirectory, segmentBytes: config.journal.segmentBytes, logger: logger,
            includeBodies: false, metrics: JournalMetrics()
        ) { record, location in
            switch record {
            case .event(let event):
                state.restore(event)
                unsettled.add(event, at: location)
                portOuts.apply(event, at: location)
            case .attempt(let attempt):
                unsettled.apply(attempt)
            }
        }
        let pending = unsettled.pendingDeliveries()
        logger.info(
            "state rebuilt",
            [
                "dedupeKeys": .number(Double(state.dedupe.count)),
                "nextSequence": .number(Double(state.nextSequence)),
                "unsettledDeliveries": .number(Double(pending.count)),
                "portOuts": .number(Double(portOuts.count)),
                "milliseconds": .number(Double(WallClock.milliseconds() - startedAt)),
            ])
        let engine = DeliveryEngine(
            tenants: config.tenants, defaults: config.delivery, journal: journal, logger: logger,
            controlFile: config.dataDir + "/destinations.json")
        engine.submit(pending)
        engine.start()
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
        let metricsPage = MetricsPage(
            ingest: ingestMetrics, journal: journal, engine: engine, server: server, startedAtMs: startedAt)
        let adminServer = HTTPServer(
            configuration: HTTPServer.Configuration(
                host: config.admin.listen.host, port: config.admin.listen.port, eventLoops: 1, limits: Limits()),
            handler: AdminRequestHandler(config: config.admin, engine: engine, metrics: metricsPage, logger: logger),
            logger: logger)
        do {
            self.port = try server.start()
            do {
                self.adminPort = try adminServer.start()
            } catch {
                server.shutdown()
                throw error
            }
        } catch {
            upstreamClient.shutdown()
            engine.shutdown()
            journal.close()
            throw error
        }
        self.adminServer = adminServer
        self.upstreamClient = upstreamClient
        self.journal = journal
        self.engine = engine
        self.server = server
        logger.info(
            "relay started",
            ["listen": .string(ListenAddress(host: config.listen.host, port: self.port).description),
             "adminListen": .string(ListenAddress(host: config.admin.listen.host, port: self.adminPort).description),
             "dataDir": .string(config.dataDir),
             "tenants": .number(Double(config.tenants.count)), "version": .string(RelayVersion.current)])
    }

    /// Estimates the events in an existing journal from its size, so the dedupe maps are sized once instead of
    /// rehashing as replay grows them. Records are rarely under 400 bytes, so this rarely overshoots.
    private static func estimatedEvents(journalDirectory: String) -> Int {
        Journal.diskUsage(directory: journalDirectory).bytes / 400
    }

    public func deliveryStatistics() -> [DestinationStatistics] {
        self.engine.statistics()
    }

    /// Stops accepting, writes what the journal has queued and stops delivering. Nothing acknowledged is lost
    /// because unsettled deliveries resume from the journal at the next start.
    public func shutdown() {
        self.adminServer.shutdown()
        self.server.shutdown()
        self.upstreamClient.shutdown()
        self.engine.shutdown()
        self.journal.close()
        self.logger.info("relay stopped", [:])
    }
}

/// Deliveries that the journal shows as not yet settled, gathered while it is replayed at start-up.
struct UnsettledDeliveries {
    private struct Entry {
        var record: EventRecord
        var location: JournalLocation
        /// Per destination: attempts made and when the next is due.
        var remaining: [String: (attempts: Int, nextAttemptAtMs: Int64)]
    }

    private var entries: [UInt64: Entry] = [:]

    mutating func add(_ event: EventRecord, at location: JournalLocation) {
        guard !event.destinations.isEmpty else { return }
        var remaining: [String: (attempts: Int, nextAttemptAtMs: Int64)] = [:]
        for destination in event.destinations {
            remaining[destination] = (0, 0)
        }
        var stored = event
        stored.body = []
        self.entries[event.sequence] = Entry(record: stored, location: location, remaining: remaining)
    }

    mutating func apply(_ attempt: AttemptRecord) {
        guard var entry = self.entries[attempt.eventSequence], entry.remaining[attempt.destination] != nil else {
            return
        }
        if attempt.outcome.isFinal {
            entry.remaining.removeValue(forKey: attempt.destination)
        } else {
            entry.remaining[attempt.destination] = (attempt.attempt, attempt.nextAttemptAtMs ?? 0)
        }
        self.entries[attempt.eventSequence] = entry.remaining.isEmpty ? nil : entry
    }

    /// Returns the unsettled deliveries in acceptance order, which keeps each port out's statuses in order.
    func pendingDeliveries() -> [PendingDelivery] {
        self.entries.keys.sorted().flatMap { sequence -> [PendingDelivery] in
            let entry = self.entries[sequence]!
            let record = entry.record
            return entry.remaining.keys.sorted().map { destination in
                let progress = entry.remaining[destination]!
                return PendingDelivery(
                    sequence: record.sequence, eventID: record.eventID, tenant: record.tenant,
                    destination: destination, orderingKey: record.portOutID.isEmpty ? record.eventID : record.portOutID,
                    location: entry.location, acceptedAtMs: record.acceptedAtMs, attempts: progress.attempts,
                    nextAttemptAtMs: progress.nextAttemptAtMs)
            }
        }
    }
}
