import Dispatch
import Synchronization

/// The failure state of writes of one kind, for the readiness check. A failure counts until a write succeeds, or
/// until `windowMs` passes with no write in flight. The lapse lets a relay that a load balancer took out of service
/// get traffic again to test its writes, since nothing else may write meanwhile.
public final class WriteHealth: Sendable {
    /// When the last failure came, on `nowMs()`'s clock, or 0 after a success.
    private let failedAtMs = Atomic<Int64>(0)
    private let writesInFlight = Atomic<Int>(0)

    public init() {}

    /// Milliseconds on a clock that a change of the wall clock does not move.
    public static func nowMs() -> Int64 {
        Int64(DispatchTime.now().uptimeNanoseconds / 1_000_000)
    }

    public func beginWrite() {
        self.writesInFlight.add(1, ordering: .relaxed)
    }

    public func recordSuccess() {
        self.writesInFlight.subtract(1, ordering: .relaxed)
        self.failedAtMs.store(0, ordering: .relaxed)
    }

    public func recordFailure(atMs: Int64) {
        self.writesInFlight.subtract(1, ordering: .relaxed)
        self.failedAtMs.store(max(atMs, 1), ordering: .relaxed)
    }

    /// Returns whether a write failed, none has succeeded since, and either the failure is within `windowMs`
    /// before `nowMs` or a write is in flight.
    public func isFailing(nowMs: Int64, windowMs: Int64) -> Bool {
        let failedAtMs = self.failedAtMs.load(ordering: .relaxed)
        guard failedAtMs != 0 else { return false }
        return nowMs - failedAtMs < windowMs || self.writesInFlight.load(ordering: .relaxed) > 0
    }
}
