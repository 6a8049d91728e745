import Foundation
import PortoutCore
import PortoutCrypto
import PortoutDelivery
import PortoutJournal
import Synchronization

/// Sends the relay's own events, signed with Standard Webhooks headers, to `operationalWebhook.url`.
///
/// Event types: `destination.disabled`, `deadLetter.created` and `replay.finished`. Each event is tried up to four
/// times, after 1, 10 and 60 seconds. At most `maxInFlight` are sent at once and `maxWaiting` wait, so a burst
/// of dead letters cannot take every file descriptor. Events beyond that are dropped and counted in the log.
/// NOTE: these events are held in memory only, so one still waiting or being retried when the relay's grace period
/// ends is lost.
final class OperationalWebhook: Sendable {
    static let retryDelaysSeconds: [Double] = [1, 10, 60]
    static let maxInFlight = 4
    static let maxWaiting = 1000

    private struct Outgoing: Sendable {
        var id: String
        var type: String
        var body: [UInt8]
        var attempt: Int
    }

    private struct Queue {
        var waiting: [Outgoing] = []
        var inFlight = 0
        var dropped = 0
    }

    private let settings: Locked<OperationalWebhookConfig?>
    private let queue = Locked<Queue>(Queue())
    private let client: HTTPClient
    /// Set by `shutdown`. Events still waiting or due for a retry are then dropped unsigned, because signing
    /// after shutdown can race OpenSSL's own clean-up when the process exits.
    private let isStopped = Atomic<Bool>(false)
    private let logger: Logger

    init(config: OperationalWebhookConfig?, logger: Logger) {
        self.settings = Locked(config)
        self.client = HTTPClient(name: "operational-webhook")
        self.logger = logger
    }

    func reload(_ config: OperationalWebhookConfig?) {
        self.settings.withLock { $0 = config }
    }

    func shutdown() {
        self.isStopped.store(true, ordering: .relaxed)
        self.client.shutdown()
    }

    /// Waits until no event is being sent or waiting, for `timeoutMs` at most, so that events made during a stop,
    /// such as the last dead letters, go out before `shutdown`. A retry scheduled for later is not waited for.
    func drain(timeoutMs: Int64) {
        let deadline = WallClock.milliseconds() + timeoutMs
        while WallClock.milliseconds() < deadline {
            guard self.queue.withLock({ $0.inFlight > 0 || !$0.waiting.isEmpty }) else { return }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }

    /// Sends one event of `type` with `data`, if an endpoint is configured.
    func send(type: String, data: JSONValue) {
        guard self.settings.withLock({ $0 }) != nil else { return }
        let id = "opev_" + (0..<12).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let body = JSONWriter.encode(.object(JSONObject([
            ("object", "event"), ("id", .string(id)), ("type", .string(type)),
            ("createdAt", .string(RFC3339.format(epochMilliseconds: WallClock.milliseconds()))), ("data", data),
        ])))
        self.enqueue(Outgoing(id: id, type: type, body: body, attempt: 1))
    }

    private func enqueue(_ event: Outgoing) {
        let (start, dropped) = self.queue.withLock { queue -> (Outgoing?, Int) in
            if queue.inFlight < Self.maxInFlight {
                queue.inFlight += 1
                return (event, 0)
            }
            guard queue.waiting.count < Self.maxWaiting else {
                queue.dropped += 1
                // One log line per hundred drops keeps a flood from filling the log as well.
                return (nil, queue.dropped % 100 == 1 ? queue.dropped : 0)
            }
            queue.waiting.append(event)
            return (nil, 0)
        }
        if dropped > 0 {
            self.logger.error(
                "operational events dropped", ["dropped": .number(Double(dropped)), "reason": "too many waiting"])
        }
        if let start {
            self.send(start)
        }
    }

    /// Frees the slot of a finished send and starts the next waiting event in it.
    private func finishSend() {
        let next = self.queue.withLock { queue -> Outgoing? in
            guard !queue.waiting.isEmpty else {
                queue.inFlight -= 1
                return nil
            }
            return queue.waiting.removeFirst()
        }
        if let next {
            self.send(next)
        }
    }

    /// Sends one attempt to the endpoint configured now, so that a reload redirects or stops events still waiting.
    private func send(_ event: Outgoing) {
        let (id, type, body, number) = (event.id, event.type, event.body, event.attempt)
        guard !self.isStopped.load(ordering: .relaxed), let config = self.settings.withLock({ $0 }) else {
            self.finishSend()
            return
        }
        let timestamp = String(WallClock.milliseconds() / 1000)
        let signatures = WebhookSignature.standardWebhooksHeader(
            keys: ([config.secret] + config.previousSecrets).map { HMACKey($0.keyBytes) }, id: id, timestamp: timestamp,
            body: body)
        let request = HTTPClient.Request(
            method: "POST", url: config.url,
            headers: [
                ("Content-Type", "application/json"), ("User-Agent", DeliveryEngine.userAgent), ("webhook-id", id),
                ("webhook-timestamp", timestamp), ("webhook-signature", signatures),
            ],
            body: body, timeoutMs: config.timeoutMs)
        self.client.send(request) { result in
            self.finishSend()
            var failure: String?
            switch result {
            case .success(let response) where (200..<300).contains(response.status):
                return
            case .success(let response):
                failure = "endpoint answered \(response.status)"
            case .failure(let error):
                failure = error.description
            }
            guard number <= Self.retryDelaysSeconds.count else {
                self.logger.error(
                    "operational event not delivered",
                    ["id": .string(id), "type": .string(type), "attempts": .number(Double(number)), "error": .string(failure ?? "")])
                return
            }
            var next = event
            next.attempt += 1
            let retry = next
            DispatchQueue.global().asyncAfter(deadline: .now() + Self.retryDelaysSeconds[number - 1]) {
                self.enqueue(retry)
            }
        }
    }
}

/// Keeps the dead-letter list and replay progress current as deliveries settle, and reports dead letters and
/// disabled destinations to the operational webhook.
struct RelayDeliveryObserver: DeliveryObserver {
    let deadLetters: DeadLetterIndex
    let replays: ReplayRegistry
    let operational: OperationalWebhook
    let logger: Logger
    /// Reads an event back from the journal; tests replace it to make reads fail.
    var readEvent: @Sendable (JournalLocation) throws(JournalError) -> JournalRecord

    init(
        journal: Journal, deadLetters: DeadLetterIndex, replays: ReplayRegistry, operational: OperationalWebhook,
        logger: Logger
    ) {
        self.deadLetters = deadLetters
        self.replays = replays
        self.operational = operational
        self.logger = logger
        self.readEvent = { location throws(JournalError) in try journal.read(at: location) }
    }

    func settled(_ delivery: PendingDelivery, attempt: AttemptRecord) {
        if let replayID = delivery.replayID {
            self.replays.settled(replayID: replayID, outcome: attempt.outcome, wasStranded: delivery.isStranded)
        }
    }

    func journaled(_ changes: [DeadLetterChange]) {
        var abandoned: [(PendingDelivery, AttemptRecord)] = []
        for change in changes {
            switch change {
            case .deadLettered(let delivery, let attempt):
                self.reserve(delivery)
                self.list(delivery, attempt: attempt, retries: 0, reports: true)
            case .abandoned(let delivery, let attempt):
                self.reserve(delivery)
                abandoned.append((delivery, attempt))
            case .replaySettled(let key, let outcome):
                self.deadLetters.replaySettled(key, outcome: outcome)
            case .replayQueued(let key):
                self.deadLetters.suspend(key)
            }
        }
        guard !abandoned.isEmpty else { return }
        let unlisted = abandoned
        // One request can abandon a whole backlog, and reading each event back here would hold up the journal's
        // writer, and every webhook waiting on it, for as long.
        self.deadLetters.inListingOrder {
            for (delivery, attempt) in unlisted {
                self.list(delivery, attempt: attempt, retries: 0, reports: false)
            }
            // The allocator keeps what the abandonment freed: 300,000 abandoned deliveries left 150 MiB of free
            // memory in the process until it was returned this way. malloc_trim locks each arena in turn, so a
            // small abandonment, which frees little, skips it.
            if unlisted.count >= Self.freeMemoryAfterAbandoned {
                releaseFreeMemory()
            }
        }
    }

    private func reserve(_ delivery: PendingDelivery) {
        self.deadLetters.reserve(
            DeliveryKey(sequence: delivery.sequence, destination: delivery.destination), segment: delivery.location.segment)
    }

    /// The smallest abandonment after which the allocator's free memory is returned to the kernel.
    static let freeMemoryAfterAbandoned = 10_000

    /// Seconds between tries to list a dead letter whose event read failed transiently. A delivery that gave up
    /// because the relay ran out of file descriptors usually reaches here while it still has none.
    static let listingRetrySeconds: [Double] = [1, 5, 30, 120, 600]

    /// Adds a dead letter to the list, and with `reports` sends it to the operational webhook. Dead letters are
    /// rare, so the event's type and status are read back from the journal here instead of being carried by every
    /// pending delivery.
    ///
    /// The dead letter took its place on the list in `journaled`, so a replay that queues its event again while
    /// the read is retried still applies to it.
    private func list(_ delivery: PendingDelivery, attempt: AttemptRecord, retries: Int, reports: Bool) {
        let record: JournalRecord
        do {
            record = try self.readEvent(delivery.location)
        } catch {
            if error.isTransient && retries < Self.listingRetrySeconds.count {
                DispatchQueue.global().asyncAfter(deadline: .now() + Self.listingRetrySeconds[retries]) {
                    self.list(delivery, attempt: attempt, retries: retries + 1, reports: reports)
                }
                return
            }
            self.deadLetters.dropReservation(DeliveryKey(sequence: delivery.sequence, destination: delivery.destination))
            self.logger.error(
                "dead letter not listed",
                ["event": .string(delivery.eventID), "destination": .string(delivery.destination),
                 "error": .string(error.description),
                 "effect": "listed after the next start"])
            return
        }
        guard case .event(let event) = record else {
            // Delivery locations come from event records, so this is a journal that changed under the relay.
            return self.deadLetters.dropReservation(DeliveryKey(sequence: delivery.sequence, destination: delivery.destination))
        }
        let deadLetter = DeadLetter(
            event: EventSummary(event, location: delivery.location), destination: delivery.destination, attempt: attempt)
        // A dead letter that a replay delivered while its event was read is not reported: it is gone already.
        guard self.deadLetters.fill(deadLetter), reports else { return }
        self.operational.send(type: "deadLetter.created", data: AdminRequestHandler.deadLetterJSON(deadLetter))
    }

    func stranded(_ waiting: [String: Int]) {
        self.replays.strand(waiting)
    }

    func destinationDisabled(tenant: String, destination: String, reason: String) {
        self.operational.send(
            type: "destination.disabled",
            data: ["tenant": .string(tenant), "destination": .string(destination), "reason": .string(reason)])
    }
}
