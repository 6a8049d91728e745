import CCurl
import CCurlShim
import Foundation
import PortoutCore
import PortoutCrypto
import PortoutJournal
import Synchronization

/// Sends accepted events to their destinations through one libcurl multi handle on its own thread.
///
/// Each destination has a `DeliveryQueue` and a concurrency limit. Bodies are read back from the journal at send
/// time, signed for the destination with Standard Webhooks headers and posted. Every attempt's outcome is
/// journaled, so a restart resumes each unsettled delivery with its attempt count. libcurl keeps connections to
/// each destination open between requests.
///
/// Thread-safety: `submit`, `statistics` and `shutdown` may be called from any thread; everything else runs on
/// the delivery thread.
public final class DeliveryEngine: Sendable {
    public static let userAgent = "portout-relay/\(RelayVersion.current)"

    private let journal: Journal
    private let logger: Logger
    private let maxRetryAfterSeconds: Int
    private let inbox = Mutex<Inbox>(Inbox())
    private let counters = Mutex<[String: DestinationStatistics]>([:])
    private let stopped = DispatchSemaphore(value: 0)
    private let loop: DeliveryLoop

    private struct Inbox {
        var deliveries: [PendingDelivery] = []
        var isStopping = false
    }

    public init(tenants: [TenantConfig], defaults: DeliveryDefaults, journal: Journal, logger: Logger) {
        self.journal = journal
        self.logger = logger
        self.maxRetryAfterSeconds = defaults.maxRetryAfterSeconds
        var destinations: [String: DestinationRuntime] = [:]
        var counters: [String: DestinationStatistics] = [:]
        for tenant in tenants {
            for destination in tenant.destinations {
                let key = Self.key(tenant: tenant.id, destination: destination.id)
                destinations[key] = DestinationRuntime(tenant: tenant.id, config: destination)
                counters[key] = DestinationStatistics(tenant: tenant.id, destination: destination.id)
            }
        }
        self.loop = DeliveryLoop(destinations: destinations)
        self.counters.withLock { $0 = counters }
    }

    static func key(tenant: String, destination: String) -> String {
        tenant + "/" + destination
    }

    public func start() {
        let thread = Thread { self.run() }
        thread.name = "delivery"
        thread.start()
    }

    /// Queues deliveries; each goes out when due and after the earlier deliveries of its ordering key.
    public func submit(_ deliveries: [PendingDelivery]) {
        guard !deliveries.isEmpty else { return }
        self.inbox.withLock { $0.deliveries.append(contentsOf: deliveries) }
        curl_multi_wakeup(self.loop.multi)
    }

    /// Per-destination counts since start, for health reports and tests.
    public func statistics() -> [DestinationStatistics] {
        self.counters.withLock { Array($0.values) }.sorted { ($0.tenant, $0.destination) < ($1.tenant, $1.destination) }
    }

    /// Stops sending. Attempts in flight are abandoned unrecorded, so they are made again after a restart.
    public func shutdown() {
        self.inbox.withLock { $0.isStopping = true }
        curl_multi_wakeup(self.loop.multi)
        self.stopped.wait()
    }

    // MARK: Delivery thread

    private func run() {
        let loop = self.loop
        while true {
            let (incoming, isStopping) = self.inbox.withLock { inbox in
                let deliveries = inbox.deliveries
                inbox.deliveries.removeAll(keepingCapacity: true)
                return (deliveries, inbox.isStopping)
            }
            if isStopping {
                loop.cancelAll()
                self.stopped.signal()
                return
            }
            self.enqueue(incoming)
            self.startDueTransfers()
            var running: Int32 = 0
            curl_multi_perform(loop.multi, &running)
            self.collectFinished()
            self.journalOutcomes()
            let timeout = self.pollTimeoutMs()
            if timeout > 0 {
                curl_multi_poll(loop.multi, nil, 0, Int32(timeout), nil)
            }
        }
    }

    private func enqueue(_ deliveries: [PendingDelivery]) {
        for delivery in deliveries {
            let key = Self.key(tenant: delivery.tenant, destination: delivery.destination)
            guard let destination = self.loop.destinations[key] else {
                self.logger.warning(
                    "delivery skipped",
                    [
                        "reason": "destination is not configured", "tenant": .string(delivery.tenant),
                        "destination": .string(delivery.destination), "event": .string(delivery.eventID),
                    ])
                continue
            }
            destination.queue.enqueue(delivery)
            self.updateCounters(key) { $0.pending = destination.queue.count }
        }
    }

    private func startDueTransfers() {
        let now = WallClock.milliseconds()
        for (key, destination) in self.loop.destinations {
            while destination.queue.inFlight < destination.config.concurrency,
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
            self.settle(delivery, destination: destination, key: key, attempt: delivery.attempts + 1,
                        decision: .deadLetter(reason: "cannot read the event from the journal: \(error)"), httpStatus: nil)
            return
        }
        let timestamp = String(nowMs / 1000)
        let signature = WebhookSignature.standardWebhooks(
            key: destination.secretKey, id: delivery.eventID, timestamp: timestamp, body: body)
        var headers = [
            "Content-Type: application/json",
            "User-Agent: \(Self.userAgent)",
            "webhook-id: \(delivery.eventID)",
            "webhook-timestamp: \(timestamp)",
            "webhook-signature: v1,\(signature)",
            // libcurl would otherwise wait for a 100 Continue before sending larger bodies.
            "Expect:",
        ]
        headers.append(contentsOf: destination.config.headers.map { "\($0.name): \($0.value)" })
        let transfer = self.loop.takeTransfer()
        transfer.prepare(url: destination.config.url, headers: headers, body: body, timeoutMs: destination.config.timeoutMs)
        transfer.delivery = delivery
        transfer.startedAtMs = nowMs
        self.loop.add(transfer)
        self.updateCounters(key) { $0.inFlight = destination.queue.inFlight }
    }

    /// Journals the outcomes settled in this pass as one batch.
    ///
    /// Outcomes are advisory: if a crash loses one, the attempt is made again after the restart, which
    /// at-least-once delivery allows. So they are not synced on their own, and a failed write is only logged.
    private func journalOutcomes() {
        guard !self.loop.outcomes.isEmpty else { return }
        let count = self.loop.outcomes.count
        let logger = self.logger
        self.journal.appendAdvisory(self.loop.outcomes) { result in
            if case .failure(let error) = result {
                logger.error(
                    "delivery outcomes not journaled",
                    ["error": .string(error.description), "records": .number(Double(count))])
            }
        }
        self.loop.outcomes.removeAll(keepingCapacity: true)
    }

    private func collectFinished() {
        var remaining: Int32 = 0
        while let message = curl_multi_info_read(self.loop.multi, &remaining) {
            guard message.pointee.msg == CURLMSG_DONE, let handle = message.pointee.easy_handle else { continue }
            let code = message.pointee.data.result
            guard let transfer = self.loop.remove(handle), let delivery = transfer.delivery else { continue }
            let result: AttemptResult
            if code == CURLE_OK {
                result = .response(
                    status: transfer.responseStatus, retryAfterSeconds: RetryAfter.seconds(transfer.retryAfterValue))
            } else {
                result = .transportError(String(cString: curl_easy_strerror(code)))
            }
            let key = Self.key(tenant: delivery.tenant, destination: delivery.destination)
            let destination = self.loop.destinations[key]!
            let attempt = delivery.attempts + 1
            let decision = RetryDecision.decide(
                result, attempt: attempt, policy: destination.config.retry,
                maxRetryAfterSeconds: self.maxRetryAfterSeconds, nowMs: WallClock.milliseconds(),
                acceptedAtMs: delivery.acceptedAtMs, random: { Double.random(in: 0..<1) })
            var httpStatus: Int?
            if case .response(let status, _) = result {
                httpStatus = status
            }
            self.settle(delivery, destination: destination, key: key, attempt: attempt, decision: decision, httpStatus: httpStatus)
            transfer.delivery = nil
            self.loop.recycle(transfer)
        }
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
            outcome = .retryScheduled
            nextAttemptAt = at
            reason = why
        case .deadLetter(let why):
            outcome = .deadLettered
            reason = why
        }
        destination.queue.settle(key: delivery.orderingKey, retryAtMs: nextAttemptAt, attempts: attempt)
        let record = AttemptRecord(
            eventSequence: delivery.sequence, tenant: delivery.tenant, destination: delivery.destination,
            attempt: attempt, outcome: outcome, httpStatus: httpStatus, atMs: now, nextAttemptAtMs: nextAttemptAt,
            error: reason)
        self.loop.outcomes.append(.attempt(record))
        self.log(delivery, attempt: attempt, outcome: outcome, httpStatus: httpStatus, reason: reason, nextAttemptAt: nextAttemptAt)
        self.updateCounters(key) { statistics in
            statistics.pending = destination.queue.count
            statistics.inFlight = destination.queue.inFlight
            switch outcome {
            case .delivered: statistics.delivered += 1
            case .retryScheduled: statistics.retries += 1
            case .deadLettered: statistics.deadLettered += 1
            }
            if outcome != .delivered {
                statistics.lastError = reason
            }
        }
    }

    private func log(
        _ delivery: PendingDelivery, attempt: Int, outcome: AttemptOutcome, httpStatus: Int?, reason: String,
        nextAttemptAt: Int64?
    ) {
        let status: JSONValue = httpStatus.map { .number(Double($0)) } ?? .null
        switch outcome {
        case .delivered:
            self.logger.debug(
                "delivery succeeded",
                ["tenant": .string(delivery.tenant), "destination": .string(delivery.destination),
                 "event": .string(delivery.eventID), "attempt": .number(Double(attempt)), "status": status])
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
        }
    }

    private func pollTimeoutMs() -> Int64 {
        let now = WallClock.milliseconds()
        var timeout: Int64 = 1000
        for destination in self.loop.destinations.values
        where destination.queue.inFlight < destination.config.concurrency {
            if let due = destination.queue.nextDueMs {
                timeout = min(timeout, max(0, due - now))
            }
        }
        return timeout
    }

    private func updateCounters(_ key: String, _ change: (inout DestinationStatistics) -> Void) {
        self.counters.withLock { counters in
            if counters[key] != nil {
                change(&counters[key]!)
            }
        }
    }
}

/// Counts for one destination since the relay started.
public struct DestinationStatistics: Sendable, Equatable {
    public var tenant: String
    public var destination: String
    public var pending = 0
    public var inFlight = 0
    public var delivered = 0
    public var retries = 0
    public var deadLettered = 0
    public var lastError: String?

    public init(tenant: String, destination: String) {
        self.tenant = tenant
        self.destination = destination
    }
}

/// A destination's settings and queue. Confined to the delivery thread.
final class DestinationRuntime {
    let tenant: String
    let config: DestinationConfig
    let secretKey: [UInt8]
    var queue = DeliveryQueue()

    init(tenant: String, config: DestinationConfig) {
        self.tenant = tenant
        self.config = config
        self.secretKey = config.secret.keyBytes
    }
}

/// The multi handle, the transfers in it and a pool of idle ones.
///
/// Thread-safety: `multi` is shared only for `curl_multi_wakeup`, which libcurl allows from any thread. All other
/// members are confined to the delivery thread, so the class is `@unchecked Sendable`.
final class DeliveryLoop: @unchecked Sendable {
    let multi: UnsafeMutableRawPointer
    let destinations: [String: DestinationRuntime]
    private var active: [UnsafeMutableRawPointer: CurlTransfer] = [:]
    private var idle: [CurlTransfer] = []
    /// Attempt records settled in the current pass, journaled together at its end.
    var outcomes: [JournalRecord] = []

    init(destinations: [String: DestinationRuntime]) {
        CurlGlobal.initialise()
        guard let multi = curl_multi_init() else {
            fatalError("curl_multi_init failed: libcurl could not allocate a handle")
        }
        self.multi = multi
        self.destinations = destinations
        let connections = destinations.values.reduce(0) { $0 + $1.config.concurrency }
        _ = portout_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, max(16, connections))
    }

    deinit {
        curl_multi_cleanup(self.multi)
    }

    func takeTransfer() -> CurlTransfer {
        self.idle.popLast() ?? CurlTransfer()
    }

    func add(_ transfer: CurlTransfer) {
        self.active[transfer.handle] = transfer
        curl_multi_add_handle(self.multi, transfer.handle)
    }

    func remove(_ handle: UnsafeMutableRawPointer) -> CurlTransfer? {
        curl_multi_remove_handle(self.multi, handle)
        return self.active.removeValue(forKey: handle)
    }

    func recycle(_ transfer: CurlTransfer) {
        self.idle.append(transfer)
    }

    func cancelAll() {
        for handle in Array(self.active.keys) {
            _ = self.remove(handle)
        }
    }
}

/// Parses `Retry-After`: delay seconds or an HTTP date.
enum RetryAfter {
    static func seconds(_ value: String?) -> Double? {
        guard let value, !value.isEmpty else { return nil }
        if let seconds = Int(value), seconds >= 0 {
            return Double(seconds)
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        guard let date = formatter.date(from: value) else { return nil }
        return max(0, date.timeIntervalSinceNow)
    }
}

public enum WallClock {
    /// Milliseconds since the Unix epoch.
    public static func milliseconds() -> Int64 {
        Int64(Date().timeIntervalSince1970 * 1000)
    }
}
