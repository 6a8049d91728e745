import Dispatch
import Synchronization

/// The failure state of writes of one kind, for the readiness check. A failure counts until a write succeeds, or
/// until `windowMs` passes with no write in flight. The lapse lets a relay that a load balancer took out of service
/// get traffic again to test its writes, since nothing else may write meanwhile.
public final class WriteHealth: Sendable {
    /// When the last failure came, on `nowMs()`'s clock, or 0 after a success.
    private let failedAtMs = Atomic<Int64>(0)
    private let writesInFlight = Atomic<Int>(0)
    /// When the writes in flight began, on `nowMs()`'s clock, or 0 when none is. Meant for one writer, as the
    /// journal's, where writes never overlap.
    private let inFlightSinceMs = Atomic<Int64>(0)

    public init() {}

    /// Milliseconds on a clock that a change of the wall clock does not move.
    public static func nowMs() -> Int64 {
        Int64(DispatchTime.now().uptimeNanoseconds / 1_000_000)
    }

    public func beginWrite(atMs: Int64 = WriteHealth.nowMs()) {
        if self.writesInFlight.add(1, ordering: .relaxed).newValue == 1 {
            self.inFlightSinceMs.store(max(atMs, 1), ordering: .relaxed)
        }
    }

    public func recordSuccess() {
        self.endWrite()
        self.failedAtMs.store(0, ordering: .relaxed)
    }

    public func recordFailure(atMs: Int64) {
        self.endWrite()
        self.failedAtMs.store(max(atMs, 1), ordering: .relaxed)
    }

    private func endWrite() {
        if self.writesInFlight.subtract(1, ordering: .relaxed).newValue == 0 {
            self.inFlightSinceMs.store(0, ordering: .relaxed)
        }
    }

    /// Returns how long the write in flight has taken until `nowMs`, in seconds, or 0 when none is in flight. A
    /// disk that stops responding shows here, since the writer then never returns to count a failure.
    public func inFlightSeconds(nowMs: Int64) -> Double {
        let sinceMs = self.inFlightSinceMs.load(ordering: .relaxed)
        guard sinceMs != 0 else { return 0 }
        return Double(max(0, nowMs - sinceMs)) / 1000
    }

    /// Returns whether a write failed, none has succeeded since, and either the failure is within `windowMs`
    /// before `nowMs` or a write is in flight.
    public func isFailing(nowMs: Int64, windowMs: Int64) -> Bool {
        let failedAtMs = self.failedAtMs.load(ordering: .relaxed)
        guard failedAtMs != 0 else { return false }
        return nowMs - failedAtMs < windowMs || self.writesInFlight.load(ordering: .relaxed) > 0
    }
}
