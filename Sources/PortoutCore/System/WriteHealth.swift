import Synchronization

/// Whether writes of one kind have been failing, for the readiness check. A failure counts for `windowMs` unless
/// a write succeeds first. It then lapses, so that a relay taken out of a load balancer by its readiness gets
/// traffic again to find out whether writes work, since nothing else may write meanwhile.
public final class WriteHealth: Sendable {
    /// When the last failure came, in milliseconds since the epoch, or 0 after a success.
    private let failedAtMs = Atomic<Int64>(0)

    public init() {}

    public func recordSuccess() {
        self.failedAtMs.store(0, ordering: .relaxed)
    }

    public func recordFailure(atMs: Int64) {
        self.failedAtMs.store(atMs, ordering: .relaxed)
    }

    /// Returns whether a write failed within `windowMs` before `nowMs` and none has succeeded since.
    public func isFailing(nowMs: Int64, windowMs: Int64) -> Bool {
        let failedAtMs = self.failedAtMs.load(ordering: .relaxed)
        return failedAtMs != 0 && nowMs - failedAtMs < windowMs
    }
}
