import PortoutCore
import Testing

struct WriteHealthTests {
    /// A failure counts until a write succeeds or the window has passed, so readiness recovers with no writes.
    @Test func failureLapsesOrClears() {
        let health = WriteHealth()
        #expect(!health.isFailing(nowMs: 10_000, windowMs: 5000))
        health.beginWrite()
        health.recordFailure(atMs: 10_000)
        #expect(health.isFailing(nowMs: 14_999, windowMs: 5000))
        #expect(!health.isFailing(nowMs: 15_000, windowMs: 5000))
        health.beginWrite()
        health.recordFailure(atMs: 20_000)
        health.beginWrite()
        health.recordSuccess()
        #expect(!health.isFailing(nowMs: 20_001, windowMs: 5000))
    }

    /// A write in flight after a failure keeps it, so writes that take longer than the window to fail do not let
    /// readiness come back between them.
    @Test func writeInFlightKeepsFailure() {
        let health = WriteHealth()
        health.beginWrite()
        health.recordFailure(atMs: 10_000)
        health.beginWrite()
        #expect(health.isFailing(nowMs: 30_000, windowMs: 5000))
        health.recordFailure(atMs: 31_000)
        #expect(!health.isFailing(nowMs: 36_000, windowMs: 5000))
    }

    /// The age of the write in flight grows until it returns, however it ends, so a write that never returns shows.
    @Test func inFlightAgeCountsFromBegin() {
        let health = WriteHealth()
        #expect(health.inFlightSeconds(nowMs: 5000) == 0)
        health.beginWrite(atMs: 10_000)
        #expect(health.inFlightSeconds(nowMs: 10_000) == 0)
        #expect(health.inFlightSeconds(nowMs: 25_500) == 15.5)
        health.recordSuccess()
        #expect(health.inFlightSeconds(nowMs: 30_000) == 0)
        health.beginWrite(atMs: 40_000)
        #expect(health.inFlightSeconds(nowMs: 41_000) == 1)
        health.recordFailure(atMs: 41_000)
        #expect(health.inFlightSeconds(nowMs: 50_000) == 0)
    }
}
