import CCurl
import CCurlShim
import Foundation
import PortoutCore
import PortoutCrypto
import PortoutJournal
import Synchronization

/// Sends accepted events to their destinations through one libcurl multi handle on its own thread.
///
/// Each destination has a `DeliveryQueue`, a concurrency limit and a mode. Bodies are read back from the journal
/// at send time, signed for the destination with Standard Webhooks headers and posted. Every attempt's outcome is
/// journaled, so a restart resumes each unsettled delivery with its attempt count. libcurl keeps connections to
/// each destination open between requests.
///
/// Thread-safety: the public methods may be called from any thread; everything else runs on the delivery thread.
/// Requests that need the delivery thread's state (`snapshot`, `setMode`) are queued to it and completed there.
public final class DeliveryEngine: Sendable {
    public static let userAgent = "portout-relay/\(RelayVersion.current)"
    /// The header lines every delivery carries before its signature headers.
    package static let fixedHeaderLines = [
        "Content-Type: application/json",
        "User-Agent: " + userAgent,
        // libcurl would otherwise wait for a 100 Continue before sending larger bodies.
        "Expect:",
    ]

    let journal: Journal
    let logger: Logger
    public let metrics: DeliveryMetrics
    let maxRetryAfterSeconds: Int
    let controlFile: DestinationControlFile?
    let observer: (any DeliveryObserver)?
    private let inbox = Locked<Inbox>(Inbox())
    let counters = Locked<[String: DestinationStatistics]>([:])
    /// Published by `publishUnconfigured`, for reports from other threads.
    let unconfigured = Locked<[UnconfiguredDestinationStatistics]>([])
    private let stopped = DispatchSemaphore(value: 0)
    private let hasStarted = Atomic<Bool>(false)
    let loop: DeliveryLoop

    private struct Inbox {
        var deliveries: [PendingDelivery] = []
        /// Work queued for the delivery thread; each closure is passed whether the thread still runs.
        var commands: [@Sendable (Bool) -> Void] = []
        /// Set by `shutdown`: when in-flight attempts are cut off.
        var stopDeadlineMs: Int64?
        /// Cleared by `stopStartingAttempts` or `shutdown`.
        var startsAttempts = true
        var hasStopped = false

        /// Whether nothing waits for the delivery thread, so that the next item queued must wake it.
        var isEmpty: Bool {
            self.deliveries.isEmpty && self.commands.isEmpty
        }
    }

    /// Creates the engine; `controlFile` is where paused and disabled destinations are kept across restarts.
    public init(
        tenants: [TenantConfig], defaults: DeliveryDefaults, journal: Journal, logger: Logger,
        metrics: DeliveryMetrics = DeliveryMetrics(), controlFile: String? = nil,
        observer: (any DeliveryObserver)? = nil, goneDestinations: GoneDestinations = GoneDestinations()
    ) {
        self.observer = observer
        self.journal = journal
        self.logger = logger
        self.metrics = metrics
        self.maxRetryAfterSeconds = defaults.maxRetryAfterSeconds
        self.controlFile = controlFile.map { DestinationControlFile(path: $0) }
        var destinations: [String: DestinationRuntime] = [:]
        for tenant in tenants {
            for destination in tenant.destinations {
                let key = Self.key(tenant: tenant.id, destination: destination.id)
                destinations[key] = DestinationRuntime(tenant: tenant.id, config: destination, metrics: metrics)
            }
        }
        self.loop = DeliveryLoop(destinations: destinations, transferThreads: defaults.transferThreads)
        self.restoreModes()
        self.restoreDisables(goneDestinations)
        self.publishCounters()
    }

    /// Returns the `tenant/destination` key that identifies a destination in the engine and its reports.
    public static func key(tenant: String, destination: String) -> String {
        tenant + "/" + destination
    }

    /// Returns the keys of every destination that `tenants` configure.
    public static func keys(of tenants: [TenantConfig]) -> Set<String> {
        Set(tenants.flatMap { tenant in tenant.destinations.map { Self.key(tenant: tenant.id, destination: $0.id) } })
    }

    /// Starts the delivery thread. Deliveries and commands queued before then wait for it.
    public func start() {
        guard !self.hasStarted.exchange(true, ordering: .acquiringAndReleasing) else { return }
        startNamedThread("delivery") { self.run() }
    }

    /// Queues deliveries; each goes out when due and after the earlier deliveries of its ordering key. After the
    /// engine has stopped they are dropped, since their events are journaled and the next start resumes them.
    public func submit(_ deliveries: [PendingDelivery]) {
        guard !deliveries.isEmpty else { return }
        let wasEmpty = self.inbox.withLock { inbox in
            guard !inbox.hasStopped else { return false }
            let wasEmpty = inbox.isEmpty
            // Taking the caller's buffer when the inbox is empty spares copying each delivery, which took about
            // 40 ms per 200,000 deliveries restored at start.
            if inbox.deliveries.isEmpty {
                inbox.deliveries = deliveries
            } else {
                inbox.deliveries.append(contentsOf: deliveries)
            }
            return wasEmpty
        }
        self.wake(ifInboxWasEmpty: wasEmpty)
    }

    /// The deliveries submitted and not yet taken by the delivery thread.
    var inboxCount: Int {
        self.inbox.withLock { $0.deliveries.count }
    }

    /// Wakes the delivery thread if the inbox was empty, since the thread takes the whole inbox after each wake-up.
    /// Ingest submits each event on its own, so waking every time cost a socket write per event.
    private func wake(ifInboxWasEmpty inboxWasEmpty: Bool) {
        if inboxWasEmpty {
            curl_multi_wakeup(self.loop.multi)
        }
    }

    /// The configured destinations, as `tenant/destination` keys.
    public func configuredDestinations() -> Set<String> {
        self.counters.withLock { Set($0.keys) }
    }

    /// Per-destination counts since start, for health reports and tests.
    public func statistics() -> [DestinationStatistics] {
        self.counters.withLock { Array($0.values) }.sorted { ($0.tenant, $0.destination) < ($1.tenant, $1.destination) }
    }

    /// Runs `command` on the delivery thread, or at once with `false` if the engine has stopped.
    func perform(_ command: @escaping @Sendable (Bool) -> Void) {
        // nil once the engine has stopped.
        let inboxWasEmpty = self.inbox.withLock { inbox -> Bool? in
            guard !inbox.hasStopped else { return nil }
            let wasEmpty = inbox.isEmpty
            inbox.commands.append(command)
            return wasEmpty
        }
        if let inboxWasEmpty {
            self.wake(ifInboxWasEmpty: inboxWasEmpty)
        } else {
            command(false)
        }
    }

    /// Stops starting attempts, while those in flight go on and their outcomes are journaled. The engine still
    /// takes deliveries and commands, so that a relay that is stopping counts every unsettled delivery.
    public func stopStartingAttempts() {
        self.inbox.withLock { $0.startsAttempts = false }
        curl_multi_wakeup(self.loop.multi)
    }

    /// Stops starting attempts, gives those in flight up to `graceMs` to finish and journals their outcomes.
    /// Attempts still in flight after that are cut off unrecorded, so they are made again after a restart.
    public func shutdown(graceMs: Int64 = 0) {
        let alreadyStopping = self.inbox.withLock { inbox -> Bool in
            inbox.startsAttempts = false
            defer { inbox.stopDeadlineMs = inbox.stopDeadlineMs ?? WallClock.milliseconds() + graceMs }
            return inbox.stopDeadlineMs != nil
        }
        guard !alreadyStopping else { return }
        if self.hasStarted.exchange(true, ordering: .acquiringAndReleasing) {
            curl_multi_wakeup(self.loop.multi)
        } else {
            // Never started: the thread finds the deadline on its first pass and stops before any attempt.
            startNamedThread("delivery") { self.run() }
        }
        self.stopped.wait()
    }

    // MARK: Delivery thread

    private func run() {
        let loop = self.loop
        while true {
            // Not emptied with `keepingCapacity`: after a start with 200,000 deliveries to restore, that allocated
            // tens of MiB on every turn, hundreds of times a second.
            let (incoming, commands) = self.inbox.withLock { inbox in
                (inbox.deliveries.takeAll(), inbox.commands.takeAll())
            }
            self.enqueue(incoming)
            for command in commands {
                command(true)
            }
            // Read after the enqueue, which takes seconds for a million deliveries restored at start, so that a
            // stop requested meanwhile starts no attempt.
            let (stopDeadline, startsAttempts) = self.inbox.withLock { ($0.stopDeadlineMs, $0.startsAttempts) }
            if let stopDeadline, loop.inFlightCount == 0 || WallClock.milliseconds() >= stopDeadline {
                self.stop()
                return
            }
            if startsAttempts {
                self.startDueTransfers()
            }
            var running: Int32 = 0
            curl_multi_perform(loop.multi, &running)
            self.collectFinished()
            self.journalOutcomes(force: stopDeadline != nil)
            self.retryModesSave(nowMs: WallClock.milliseconds())
            // Not from pollTimeoutMs once attempts stop starting, since a due delivery would make that 0 and spin.
            var timeout = startsAttempts ? self.pollTimeoutMs() : 50
            if let heldSince = self.loop.outcomesHeldSinceMs {
                timeout = min(timeout, max(0, heldSince + Self.outcomeHoldMs - WallClock.milliseconds()))
            }
            if let retryAt = self.loop.modesSaveRetryAtMs {
                timeout = min(timeout, max(0, retryAt - WallClock.milliseconds()))
            }
            if timeout > 0 {
                curl_multi_poll(loop.multi, nil, 0, Int32(timeout), nil)
            }
        }
    }

    private func stop() {
        self.journalOutcomes(force: true)
        self.retryModesSave(nowMs: WallClock.milliseconds(), force: true)
        let cutOff = self.loop.inFlightCount
        self.loop.cancelAll()
        self.publishUnconfigured()
        let late = self.inbox.withLock { inbox in
            inbox.hasStopped = true
            inbox.deliveries.removeAll()
            defer { inbox.commands.removeAll() }
            return inbox.commands
        }
        for command in late {
            command(false)
        }
        if cutOff > 0 {
            self.logger.warning(
                "in-flight deliveries cut off at shutdown",
                ["deliveries": .number(Double(cutOff)), "reason": "the shutdown grace period ended",
                 "effect": "made again after the next start"])
        }
        self.stopped.signal()
    }

    private func enqueue(_ deliveries: [PendingDelivery]) {
        var isHeldChanged = false
        // Each destination's key and runtime are found once per batch, and its published count is updated once.
        // Done per delivery, that was about a quarter of the delivery thread's samples while it queued a million
        // deliveries restored at start.
        var targets: [DestinationName: (key: String, runtime: DestinationRuntime?)] = [:]
        for delivery in deliveries {
            let name = delivery.destinationName
            let target: (key: String, runtime: DestinationRuntime?)
            if let known = targets[name] {
                target = known
            } else {
                target = (name.key, self.loop.runtime(name.key))
                targets[name] = target
            }
            guard let destination = target.runtime else {
                // Held rather than dropped: the journal has the delivery unsettled, and a restart with the
                // destination configured would send it, so a reload that configures it sends it too.
                self.loop.unconfigured[target.key, default: DeliveryQueue()].enqueue(delivery)
                isHeldChanged = self.holdUnconfiguredWithUnknownMode(target.key) || isHeldChanged
                continue
            }
            destination.queue.enqueue(delivery)
        }
        for target in targets.values {
            guard let destination = target.runtime else { continue }
            self.updateCounters(target.key) { $0.pending = destination.queue.count }
        }
        if isHeldChanged, !self.loop.savesKeepModesFile, let controlFile = self.controlFile {
            self.saveModesLoggingFailure(controlFile)
        }
    }

    private func startDueTransfers() {
        let now = WallClock.milliseconds()
        for (key, destination) in self.loop.destinations {
            while destination.queue.inFlight < destination.sendLimit, destination.queue.hasDue(nowMs: now),
                destination.rateLimiter?.take(nowMs: now) ?? true,
                let delivery = destination.queue.takeDue(nowMs: now)
            {
                self.start(delivery, to: destination, key: key, nowMs: now)
            }
        }
    }

    private func start(_ delivery: PendingDelivery, to destination: DestinationRuntime, key: String, nowMs: Int64) {
        let body: [UInt8]
        do {
            body = try self.journal.readEventBody(at: delivery.location).body
        } catch {
            let attempt = delivery.attempts + 1
            let decision = RetryDecision.decide(
                readFailure: "cannot read the event from the journal: \(error)", isTransient: error.isTransient,
                attempt: attempt, policy: destination.config.retry, nowMs: nowMs, acceptedAtMs: delivery.acceptedAtMs,
                random: { Double.random(in: 0..<1) })
            self.settle(
                delivery, destination: destination, key: key, attempt: attempt, decision: decision, httpStatus: nil)
            return
        }
        let timestamp = String(nowMs / 1000)
        let signatures = WebhookSignature.standardWebhooksHeader(
            keys: destination.secretKeys, id: delivery.eventID, timestamp: timestamp, body: body)
        var headers = Self.fixedHeaderLines
        headers.reserveCapacity(headers.count + 3 + destination.headerLines.count)
        headers.append("webhook-id: " + delivery.eventID)
        headers.append("webhook-timestamp: " + timestamp)
        headers.append("webhook-signature: " + signatures)
        headers.append(contentsOf: destination.headerLines)
        let transfer = self.loop.takeTransfer()
        transfer.prepare(url: destination.config.url, headers: headers, body: body, timeoutMs: destination.config.timeoutMs)
        transfer.delivery = delivery
        transfer.startedAtMs = nowMs
        self.loop.add(transfer)
        self.updateCounters(key) { $0.inFlight = destination.queue.inFlight }
    }

    /// Outcomes are held for at most this long, or until this many are held, and then journaled together.
    ///
    /// Handing each pass's one or two outcomes to the journal woke its writer thread about once per delivery.
    /// Batching raised the delivery benchmark's rate from about 25,800 to 29,000 a second. Holding outcomes
    /// longer would lose more of them in a crash, and each lost outcome is a delivery made again after restart.
    static let outcomeHoldMs: Int64 = 1
    static let outcomeBatchRecords = 16

    /// Journals the held outcomes as one batch once the batch is full, the oldest has been held for
    /// `outcomeHoldMs`, nothing is in flight any more, or `force` is set.
    ///
    /// Outcomes are advisory: if a crash loses one, the attempt is made again after the restart, which
    /// at-least-once delivery allows. So they are not synced on their own, and a failed write is only logged.
    /// `durable` syncs the batch. A replay record held among the outcomes needs that, since no retry makes up
    /// for its loss. `written` gets the write's error, or nil once the batch is written: on the journal's writer
    /// thread, on another thread when the journal refuses the batch at once, or at once when nothing is held.
    func journalOutcomes(
        force: Bool, durable: Bool = false, written: (@Sendable (JournalError?) -> Void)? = nil
    ) {
        guard let heldSince = self.loop.outcomesHeldSinceMs else {
            written?(nil)
            return
        }
        precondition(force || written == nil, "a caller waiting for the write must force it")
        let isDue = force || self.loop.outcomes.count >= Self.outcomeBatchRecords || self.loop.inFlightCount == 0
            || WallClock.milliseconds() - heldSince >= Self.outcomeHoldMs
        guard isDue else { return }
        self.loop.outcomesHeldSinceMs = nil
        let count = self.loop.outcomes.count
        let logger = self.logger
        let observer = self.observer
        let changes = self.loop.heldChanges
        self.loop.heldChanges.removeAll()
        let completion: Journal.Completion = { result in
            switch result {
            case .success:
                if !changes.isEmpty {
                    observer?.journaled(changes)
                }
                written?(nil)
            case .failure(let error):
                written?(error)
                let abandoned = changes.count { if case .abandoned = $0 { true } else { false } }
                let deadLetters = changes.count(where: \.isDeadLetter) - abandoned
                logger.error(
                    "delivery outcomes not journaled",
                    ["error": .string(error.description), "records": .number(Double(count)),
                     "deadLetters": .number(Double(deadLetters)), "abandoned": .number(Double(abandoned)),
                     "effect": .string(
                        "these attempts are made again after the next start, and their dead letters not listed; "
                            + "abandoned deliveries wait in their queues again")])
            }
        }
        if durable {
            self.journal.appendAll(self.loop.outcomes, completion: completion)
        } else {
            self.journal.appendAdvisory(self.loop.outcomes, completion: completion)
        }
        self.loop.outcomes.removeAll(keepingCapacity: true)
    }

    private func collectFinished() {
        var remaining: Int32 = 0
        while let message = curl_multi_info_read(self.loop.multi, &remaining) {
            guard message.pointee.msg == CURLMSG_DONE, let handle = message.pointee.easy_handle else { continue }
            let code = message.pointee.data.result
            guard let transfer = self.loop.remove(handle) else { continue }
            self.finish(transfer, code: code)
        }
        for finished in self.loop.takeWorkerFinished() {
            self.finish(finished.transfer, code: finished.code)
        }
    }

    /// Decides what a finished attempt means for its delivery and settles it.
    private func finish(_ transfer: CurlTransfer, code: CURLcode) {
        guard let delivery = transfer.delivery else { return }
        let result: AttemptResult
        if code == CURLE_OK {
            result = .response(
                status: transfer.responseStatus, retryAfterSeconds: RetryAfter.seconds(transfer.retryAfterValue))
        } else {
            result = .transportError(String(cString: curl_easy_strerror(code)))
        }
        let key = delivery.destinationKey
        // A transfer belongs to a configured or detached destination, since detaching keeps in-flight ones.
        let destination = self.loop.runtime(key)!
        let now = WallClock.milliseconds()
        destination.durationHistogram.observe(Double(now - transfer.startedAtMs) / 1000)
        let attempt = delivery.attempts + 1
        var decision = RetryDecision.decide(
            result, attempt: attempt, policy: destination.config.retry,
            maxRetryAfterSeconds: self.maxRetryAfterSeconds, nowMs: now,
            acceptedAtMs: delivery.acceptedAtMs, random: { Double.random(in: 0..<1) })
        var httpStatus: Int?
        if case .response(let status, _) = result {
            httpStatus = status
            if status == 410 {
                // 410 means the endpoint is gone for good, so its deliveries are held instead of each being
                // dead-lettered. This one stays at the head of its lane for when an operator resumes it.
                decision = .retry(atMs: now, reason: "destination answered 410 Gone")
                self.disable(destination, key: key, reason: "destination answered 410 Gone")
            }
        }
        self.settle(delivery, destination: destination, key: key, attempt: attempt, decision: decision, httpStatus: httpStatus)
        transfer.delivery = nil
        self.loop.recycle(transfer)
    }

    private func settle(
        _ delivery: PendingDelivery, destination: DestinationRuntime, key: String, attempt: Int,
        decision: RetryDecision, httpStatus: Int?
    ) {
        let now = WallClock.milliseconds()
        let outcome: AttemptOutcome
        var nextAttemptAt: Int64?
        var reason = ""
        switch decision {
        case .delivered:
            outcome = .delivered
        case .retry(let at, let why):
            if let replayID = delivery.replayID, self.loop.cancelledReplays.contains(replayID) {
                // The failure stays in the reason, since it is the destination's last error too.
                outcome = .cancelled
                reason = why + "; withdrawn instead of retried: " + AttemptRecord.withdrawalReason(replayID)
            } else {
                outcome = .retryScheduled
                nextAttemptAt = at
                reason = why
            }
        case .deadLetter(let why):
            outcome = .deadLettered
            reason = why
        }
        destination.queue.settle(key: delivery.orderingKey, retryAtMs: nextAttemptAt, attempts: attempt)
        if outcome == .retryScheduled, let replayID = delivery.replayID, !delivery.isStranded,
            self.loop.destinations[key] == nil
        {
            // The attempt was in flight at the reload that removed the destination, so the reload left it unmarked.
            destination.queue.markStranded(headOf: delivery.orderingKey)
            self.observer?.stranded([replayID: 1])
        }
        self.recordHealth(destination, key: key, succeeded: outcome == .delivered)
        let record = AttemptRecord(
            eventSequence: delivery.sequence, tenant: delivery.tenant, destination: delivery.destination,
            attempt: attempt, outcome: outcome, httpStatus: httpStatus, atMs: now, nextAttemptAtMs: nextAttemptAt,
            error: reason)
        self.loop.hold(record, of: delivery, nowMs: now)
        self.observer?.settled(delivery, attempt: record)
        if outcome == .delivered, let httpStatus, (200..<300).contains(httpStatus) {
            destination.deliveredCounter.increment()
        } else {
            self.metrics.attempts.labels(
                delivery.tenant, delivery.destination, outcome.name, DeliveryMetrics.statusClass(httpStatus)
            ).increment()
        }
        self.log(delivery, attempt: attempt, outcome: outcome, httpStatus: httpStatus, reason: reason, nextAttemptAt: nextAttemptAt)
        self.updateCounters(key) { statistics in
            statistics.pending = destination.queue.count
            statistics.inFlight = destination.queue.inFlight
            statistics.consecutiveFailures = destination.consecutiveFailures
            statistics.isBreakerOpen = destination.isBreakerOpen
            switch outcome {
            case .delivered:
                statistics.delivered += 1
                statistics.lastDeliveredAtMs = now
            case .retryScheduled: statistics.retries += 1
            case .deadLettered: statistics.deadLettered += 1
            case .cancelled: break
            }
            if outcome != .delivered {
                statistics.lastError = reason
                statistics.lastErrorAtMs = now
            }
        }
    }

    /// Counts a success or failure towards the breaker, and logs when it opens or closes.
    private func recordHealth(_ destination: DestinationRuntime, key: String, succeeded: Bool) {
        let wasOpen = destination.isBreakerOpen
        destination.consecutiveFailures = succeeded ? 0 : destination.consecutiveFailures + 1
        guard wasOpen != destination.isBreakerOpen else { return }
        let fields: KeyValuePairs<String, JSONValue> = [
            "tenant": .string(destination.tenant), "destination": .string(destination.config.id),
            "consecutiveFailures": .number(Double(destination.consecutiveFailures)),
        ]
        if !wasOpen && destination.isBreakerOpen {
            self.logger.warning("destination breaker opened; sending one delivery at a time", fields)
        } else if wasOpen && !destination.isBreakerOpen {
            self.logger.info("destination breaker closed", fields)
        }
    }

    private func log(
        _ delivery: PendingDelivery, attempt: Int, outcome: AttemptOutcome, httpStatus: Int?, reason: String,
        nextAttemptAt: Int64?
    ) {
        // A success is logged at debug level only, and it is the common case, so its fields are not built
        // unless they will be written.
        if outcome == .delivered && !self.logger.isEnabled(.debug) {
            return
        }
        let status: JSONValue = httpStatus.map { .number(Double($0)) } ?? .null
        switch outcome {
        case .delivered:
            self.logger.debug(
                "delivery succeeded",
                ["tenant": .string(delivery.tenant), "destination": .string(delivery.destination),
                 "event": .string(delivery.eventID), "attempt": .number(Double(attempt)), "status": status])
        case .retryScheduled where httpStatus == 410:
            // The destination is disabled with it, so no retry is due until an operator resumes it.
            self.logger.warning(
                "delivery failed, held until the destination is resumed",
                ["tenant": .string(delivery.tenant), "destination": .string(delivery.destination),
                 "event": .string(delivery.eventID), "attempt": .number(Double(attempt)), "status": status,
                 "reason": .string(reason)])
        case .retryScheduled:
            self.logger.warning(
                "delivery failed, retry scheduled",
                ["tenant": .string(delivery.tenant), "destination": .string(delivery.destination),
                 "event": .string(delivery.eventID), "attempt": .number(Double(attempt)), "status": status,
                 "reason": .string(reason),
                 "nextAttemptAt": .string(RFC3339.format(epochMilliseconds: nextAttemptAt ?? 0))])
        case .deadLettered:
            self.logger.error(
                "delivery dead-lettered",
                ["tenant": .string(delivery.tenant), "destination": .string(delivery.destination),
                 "event": .string(delivery.eventID), "attempt": .number(Double(attempt)), "status": status,
                 "reason": .string(reason)])
        case .cancelled:
            break
        }
    }

    private func pollTimeoutMs() -> Int64 {
        let now = WallClock.milliseconds()
        var timeout: Int64 = 1000
        for destination in self.loop.destinations.values
        where destination.queue.inFlight < destination.sendLimit {
            if var due = destination.queue.nextDueMs() {
                if due <= now, let nextToken = destination.rateLimiter?.nextTokenAtMs(nowMs: now) {
                    due = nextToken
                }
                timeout = min(timeout, max(0, due - now))
            }
        }
        return timeout
    }

    /// Changes the published statistics of a configured destination, or the kept ones of a destination a reload
    /// removed, whose attempts in flight still settle. Runs on the delivery thread.
    func updateCounters(_ key: String, _ change: (inout DestinationStatistics) -> Void) {
        let isPublished = self.counters.withLock { counters -> Bool in
            guard counters[key] != nil else { return false }
            change(&counters[key]!)
            return true
        }
        if !isPublished && self.loop.detachedStatistics[key] != nil {
            change(&self.loop.detachedStatistics[key]!)
        }
    }
}

/// A destination that the configuration does not name but that still has unsettled deliveries in memory. Nothing
/// is sent to it until a reload or a start configures it again, which sends them in order.
public struct UnconfiguredDestinationStatistics: Sendable, Equatable {
    public var tenant: String
    public var destination: String
    /// Whether a reload removed it. Otherwise it was not configured at start, when the journal had deliveries
    /// for it, or a replay queued deliveries for it.
    public var removedByReload: Bool
    /// Deliveries not yet settled, including those in flight.
    public var pending: Int
    /// Attempts that were in flight when a reload removed the destination, and have not settled yet.
    public var inFlight: Int
    public var oldestPendingAcceptedAtMs: Int64?
}

/// Receives what the engine does, on the delivery thread; implementations must not block.
public protocol DeliveryObserver: Sendable {
    /// Called with each attempt that settled or was scheduled again, and with each withdrawn delivery, before
    /// the journal has its record.
    func settled(_ delivery: PendingDelivery, attempt: AttemptRecord)
    /// Called with the changes to the dead-letter list that a batch of outcome records makes, once the journal
    /// has the batch, from the journal's writer thread and in the journal's order. A batch whose write failed
    /// never arrives here: the next start makes its attempts again.
    func journaled(_ changes: [DeadLetterChange])
    /// Called when a destination is disabled because it returned 410 Gone.
    func destinationDisabled(tenant: String, destination: String, reason: String)
    /// Called with replayed deliveries, counted by replay id, that now wait for a destination no longer
    /// configured: an attempt that was in flight when a reload removed its destination, and is to be retried.
    func stranded(_ waiting: [String: Int])
}

/// A destination's counts since the relay started, with its mode and health.
public struct DestinationStatistics: Sendable, Equatable {
    public var tenant: String
    public var destination: String
    public var mode = DestinationMode.active
    /// The reason the destination is paused or disabled; empty while it is active.
    public var modeReason = ""
    /// Deliveries not yet settled, including those in flight.
    public var pending = 0
    public var inFlight = 0
    public var delivered = 0
    public var retries = 0
    public var deadLettered = 0
    /// Deliveries that an operator abandoned, which are on the dead-letter list but not counted in `deadLettered`.
    public var abandoned = 0
    /// Failed attempts since the last success.
    public var consecutiveFailures = 0
    /// Whether the failures reached the breaker threshold, so deliveries go out one at a time.
    public var isBreakerOpen = false
    public var lastError: String?
    public var lastErrorAtMs: Int64?
    public var lastDeliveredAtMs: Int64?
    /// When the oldest unsettled delivery's event was accepted, or when a replay queued it; set only by
    /// `DeliveryEngine.snapshot`.
    public var oldestPendingAcceptedAtMs: Int64?
    /// Whether the relay paused the destination because its saved mode could not be read. An operator's resume,
    /// or a pause with a reason, ends it.
    public var isModeUnknown = false
    /// When the mode last changed, in Unix milliseconds, carried across restarts by destinations.json. It is 0 when
    /// the mode has not changed since the destination was configured.
    public var modeChangedAtMs: Int64 = 0

    public init(tenant: String, destination: String) {
        self.tenant = tenant
        self.destination = destination
    }
}
