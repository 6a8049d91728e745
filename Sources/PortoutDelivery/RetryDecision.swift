import PortoutCore

/// The result of one attempt, as the destination returned it.
public enum AttemptResult: Sendable, Equatable {
    /// A response arrived; `retryAfterSeconds` is the parsed `Retry-After`, if any.
    case response(status: Int, retryAfterSeconds: Double?)
    /// No response: connection refused, reset, DNS failure or timeout, with libcurl's text.
    case transportError(String)
}

/// The next step for a delivery after an attempt.
public enum RetryDecision: Sendable, Equatable {
    case delivered
    case retry(atMs: Int64, reason: String)
    case deadLetter(reason: String)

    /// Decides the fate of attempt number `attempt` (1-based).
    ///
    /// Connection errors, timeouts, 408, 425, 429 and 5xx are retried after the policy's delay, or after the
    /// destination's `Retry-After` when that is longer (capped at `maxRetryAfterSeconds`). Any other status,
    /// including 3xx because redirects are not followed, dead-letters at once. A retry that would exceed
    /// `maxAttempts` or fall after `acceptedAtMs + maxAgeSeconds` dead-letters instead. `random` returns a value
    /// in 0..<1 and spreads retries by the policy's jitter.
    public static func decide(
        _ result: AttemptResult, attempt: Int, policy: RetryPolicy, maxRetryAfterSeconds: Int, nowMs: Int64,
        acceptedAtMs: Int64, random: () -> Double
    ) -> RetryDecision {
        var retryAfter: Double?
        let reason: String
        switch result {
        case .response(let status, let retryAfterSeconds):
            if (200..<300).contains(status) {
                return .delivered
            }
            guard self.isRetryable(status) else {
                return .deadLetter(reason: "destination answered \(status)")
            }
            reason = "destination answered \(status)"
            retryAfter = retryAfterSeconds.map { min($0, Double(maxRetryAfterSeconds)) }
        case .transportError(let text):
            reason = text
        }
        guard attempt < policy.maxAttempts else {
            return .deadLetter(reason: "\(reason); gave up after \(attempt) \(attempt == 1 ? "attempt" : "attempts")")
        }
        let scheduleIndex = min(attempt - 1, policy.scheduleSeconds.count - 1)
        let base = policy.scheduleSeconds.isEmpty ? 0 : policy.scheduleSeconds[max(0, scheduleIndex)]
        let jittered = base * (1 + policy.jitter * (2 * random() - 1))
        let delaySeconds = max(jittered, retryAfter ?? 0)
        let at = nowMs + Int64(delaySeconds * 1000)
        if at > acceptedAtMs + Int64(policy.maxAgeSeconds) * 1000 {
            return .deadLetter(reason: "\(reason); next attempt would pass the maximum age of \(policy.maxAgeSeconds) s")
        }
        return .retry(atMs: at, reason: reason)
    }

    /// Decides the fate of attempt number `attempt` when the event could not be read back from the journal.
    ///
    /// A transient failure (`JournalError.isTransient`) is retried as a failed connection is. Any other would
    /// recur on every attempt, so it dead-letters at once.
    public static func decide(
        readFailure reason: String, isTransient: Bool, attempt: Int, policy: RetryPolicy, nowMs: Int64,
        acceptedAtMs: Int64, random: () -> Double
    ) -> RetryDecision {
        guard isTransient else {
            return .deadLetter(reason: reason)
        }
        return self.decide(
            .transportError(reason), attempt: attempt, policy: policy, maxRetryAfterSeconds: 0, nowMs: nowMs,
            acceptedAtMs: acceptedAtMs, random: random)
    }

    static func isRetryable(_ status: Int) -> Bool {
        status == 408 || status == 425 || status == 429 || (500..<600).contains(status)
    }
}
