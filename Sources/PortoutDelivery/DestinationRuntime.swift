import PortoutCrypto
import PortoutCore
import PortoutJournal

/// Whether a destination is sent its deliveries.
public enum DestinationMode: String, Sendable, CaseIterable {
    case active
    /// Held by an operator; deliveries queue up and go out in order on resume.
    case paused
    /// Held because the destination returned 410 Gone. Deliveries queue up until an operator resumes it.
    case disabled
}

/// A destination's settings, queue and health. Confined to the delivery thread.
final class DestinationRuntime {
    let tenant: String
    let config: DestinationConfig
    /// The keys of `secret` and then of `previousSecrets`, each giving one signature of every delivery.
    let secretKeys: [HMACKey]
    /// The configured static headers as `name: value` lines, built once for every delivery to use.
    let headerLines: [String]
    var queue = DeliveryQueue()
    var mode = DestinationMode.active
    /// The reason the destination was paused or disabled, for the admin API.
    var modeReason = ""
    var modeChangedAtMs: Int64 = 0
    var consecutiveFailures = 0
    var rateLimiter: RateLimiter?
    /// The destination's members of the delivery metrics, looked up once instead of by label values per attempt.
    let durationHistogram: Histogram
    let deliveredCounter: Counter

    init(tenant: String, config: DestinationConfig, metrics: DeliveryMetrics) {
        self.tenant = tenant
        self.config = config
        self.durationHistogram = metrics.duration.labels(tenant, config.id)
        self.deliveredCounter = metrics.attempts.labels(
            tenant, config.id, AttemptOutcome.delivered.name, DeliveryMetrics.statusClass(200))
        self.secretKeys = ([config.secret] + config.previousSecrets).map { HMACKey($0.keyBytes) }
        self.headerLines = config.headers.map { $0.name + ": " + $0.value }
        self.rateLimiter = config.rateLimit.map { RateLimiter(perSecond: $0) }
    }

    /// Creates the runtime of a reconfigured destination, keeping the queue, mode and failure count of `previous`.
    convenience init(config: DestinationConfig, takingOver previous: DestinationRuntime, metrics: DeliveryMetrics) {
        self.init(tenant: previous.tenant, config: config, metrics: metrics)
        self.queue = previous.queue
        self.mode = previous.mode
        self.modeReason = previous.modeReason
        self.modeChangedAtMs = previous.modeChangedAtMs
        self.consecutiveFailures = previous.consecutiveFailures
        if config.rateLimit == previous.config.rateLimit {
            self.rateLimiter = previous.rateLimiter
        }
    }

    /// Whether a run of failures has reached the breaker threshold, so attempts go out one at a time.
    var isBreakerOpen: Bool {
        self.consecutiveFailures >= self.config.breakerThreshold
    }

    /// How many attempts may be in flight now.
    var sendLimit: Int {
        guard self.mode == .active else { return 0 }
        return self.isBreakerOpen ? 1 : self.config.concurrency
    }
}

/// A token bucket that allows `perSecond` starts a second, with a burst of a tenth of a second's worth (at least one).
struct RateLimiter {
    let perSecond: Double
    let burst: Double
    private var tokens: Double
    private var updatedAtMs: Int64 = 0

    init(perSecond: Double) {
        self.perSecond = perSecond
        self.burst = max(1, perSecond / 10)
        self.tokens = self.burst
    }

    /// Takes one token if one is available at `nowMs`.
    mutating func take(nowMs: Int64) -> Bool {
        self.refill(nowMs: nowMs)
        guard self.tokens >= 1 else { return false }
        self.tokens -= 1
        return true
    }

    /// When the next token will be available.
    mutating func nextTokenAtMs(nowMs: Int64) -> Int64 {
        self.refill(nowMs: nowMs)
        guard self.tokens < 1 else { return nowMs }
        return nowMs + Int64(((1 - self.tokens) / self.perSecond * 1000).rounded(.up))
    }

    private mutating func refill(nowMs: Int64) {
        if self.updatedAtMs != 0 {
            let elapsed = Double(max(0, nowMs - self.updatedAtMs)) / 1000
            self.tokens = min(self.burst, self.tokens + elapsed * self.perSecond)
        }
        self.updatedAtMs = nowMs
    }
}
