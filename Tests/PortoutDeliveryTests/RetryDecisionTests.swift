import PortoutCore
import PortoutJournal
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import PortoutDelivery

struct RetryDecisionTests {
    static var policy: RetryPolicy {
        var policy = RetryPolicy()
        policy.scheduleSeconds = [5, 60]
        policy.jitter = 0
        policy.maxAttempts = 4
        policy.maxAgeSeconds = 3600
        return policy
    }

    static func decide(_ result: AttemptResult, attempt: Int = 1, now: Int64 = 1_000_000) -> RetryDecision {
        RetryDecision.decide(
            result, attempt: attempt, policy: self.policy, maxRetryAfterSeconds: 120, nowMs: now,
            acceptedAtMs: 1_000_000, random: { 0.5 })
    }

    @Test func successIsDelivered() {
        #expect(Self.decide(.response(status: 200, retryAfterSeconds: nil)) == .delivered)
        #expect(Self.decide(.response(status: 204, retryAfterSeconds: nil)) == .delivered)
    }

    @Test(arguments: [408, 425, 429, 500, 502, 503, 504])
    func retryableStatusRetries(_ status: Int) {
        #expect(Self.decide(.response(status: status, retryAfterSeconds: nil))
            == .retry(atMs: 1_005_000, reason: "destination answered \(status)"))
    }

    @Test(arguments: [301, 302, 400, 401, 403, 404, 410, 422])
    func otherStatusDeadLetters(_ status: Int) {
        #expect(Self.decide(.response(status: status, retryAfterSeconds: nil))
            == .deadLetter(reason: "destination answered \(status)"))
    }

    @Test func transportErrorRetriesOnSchedule() {
        #expect(Self.decide(.transportError("Couldn't connect to server"), attempt: 2)
            == .retry(atMs: 1_060_000, reason: "Couldn't connect to server"))
        // The last delay repeats once the schedule runs out.
        #expect(Self.decide(.transportError("Timeout was reached"), attempt: 3)
            == .retry(atMs: 1_060_000, reason: "Timeout was reached"))
    }

    @Test func retryAfterLongerThanScheduleWinsAndIsCapped() {
        #expect(Self.decide(.response(status: 429, retryAfterSeconds: 30))
            == .retry(atMs: 1_030_000, reason: "destination answered 429"))
        #expect(Self.decide(.response(status: 429, retryAfterSeconds: 1))
            == .retry(atMs: 1_005_000, reason: "destination answered 429"))
        #expect(Self.decide(.response(status: 503, retryAfterSeconds: 99_999))
            == .retry(atMs: 1_120_000, reason: "destination answered 503"))
    }

    /// A journal read that failed for want of descriptors or memory is retried; a missing or damaged record,
    /// which would fail again, dead-letters at once.
    @Test(arguments: [(EMFILE, true), (ENFILE, true), (ENOMEM, true), (ENOENT, false), (EIO, false), (0, false)])
    func readFailureRetriesOnlyWhenTransient(_ errno: Int32, _ isRetried: Bool) {
        let error = JournalError(path: "/journal/1.seg", reason: "cannot read", errno: errno)
        #expect(error.isTransient == isRetried)
        let decision = RetryDecision.decide(
            readFailure: "cannot read", isTransient: error.isTransient, attempt: 1, policy: Self.policy,
            nowMs: 1_000_000, acceptedAtMs: 1_000_000, random: { 0.5 })
        let expected: RetryDecision =
            isRetried ? .retry(atMs: 1_005_000, reason: "cannot read") : .deadLetter(reason: "cannot read")
        #expect(decision == expected)
    }

    @Test func lastAttemptDeadLetters() {
        #expect(Self.decide(.response(status: 503, retryAfterSeconds: nil), attempt: 4)
            == .deadLetter(reason: "destination answered 503; gave up after 4 attempts"))
    }

    @Test func maximumAgeDeadLetters() {
        let decision = Self.decide(.response(status: 500, retryAfterSeconds: nil), attempt: 2, now: 1_000_000 + 3_590_000)
        #expect(decision == .deadLetter(reason: "destination answered 500; next attempt would pass the maximum age of 3600 s"))
    }

    @Test func jitterSpreadsDelay() {
        var policy = Self.policy
        policy.jitter = 0.2
        let early = RetryDecision.decide(
            .transportError("x"), attempt: 1, policy: policy, maxRetryAfterSeconds: 0, nowMs: 0, acceptedAtMs: 0,
            random: { 0 })
        let late = RetryDecision.decide(
            .transportError("x"), attempt: 1, policy: policy, maxRetryAfterSeconds: 0, nowMs: 0, acceptedAtMs: 0,
            random: { 0.999_999 })
        #expect(early == .retry(atMs: 4000, reason: "x"))
        #expect(late == .retry(atMs: 5999, reason: "x"))
    }

    @Test func retryAfterParsing() {
        #expect(RetryAfter.seconds("120") == 120)
        #expect(RetryAfter.seconds("-1") == nil)
        #expect(RetryAfter.seconds("soon") == nil)
        #expect(RetryAfter.seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0)
        #expect(RetryAfter.seconds(nil) == nil)
        #expect(RetryAfter.seconds("+120") == nil)
    }

    /// A delay too large for Int is still a request to wait long, so it reaches the cap instead of being dropped.
    @Test func retryAfterBeyondIntIsCapped() {
        let seconds = RetryAfter.seconds("99999999999999999999999")
        #expect(seconds == Double(Int.max))
        // The policy's cap for Retry-After in decide(_:) is 120 s.
        #expect(Self.decide(.response(status: 503, retryAfterSeconds: seconds))
            == .retry(atMs: 1_120_000, reason: "destination answered 503"))
    }
}

struct DeliveryQueueTests {
    static func delivery(_ sequence: UInt64, key: String, due: Int64 = 0) -> PendingDelivery {
        PendingDelivery(
            sequence: sequence, eventID: "evt_\(sequence)", tenant: "t1", destination: "d1", orderingKey: key,
            location: JournalLocation(segment: 1, offset: 0, length: 0), acceptedAtMs: 0, nextAttemptAtMs: due)
    }

    @Test func laneHeadBlocksItsLaneOnly() {
        var queue = DeliveryQueue()
        queue.enqueue(Self.delivery(1, key: "a"))
        queue.enqueue(Self.delivery(2, key: "a"))
        queue.enqueue(Self.delivery(3, key: "b"))
        #expect(queue.takeDue(nowMs: 0)?.sequence == 1)
        #expect(queue.takeDue(nowMs: 0)?.sequence == 3)
        // Sequence 2 waits behind 1, which is in flight.
        #expect(queue.takeDue(nowMs: 0) == nil)
        queue.settle(key: "a", retryAtMs: 100, attempts: 1)
        #expect(queue.takeDue(nowMs: 50) == nil)
        #expect(queue.nextDueMs() == 100)
        let retried = queue.takeDue(nowMs: 100)
        #expect(retried?.sequence == 1)
        #expect(retried?.attempts == 1)
        queue.settle(key: "a", retryAtMs: nil, attempts: 2)
        #expect(queue.takeDue(nowMs: 100)?.sequence == 2)
        #expect(queue.inFlight == 2)
        #expect(queue.count == 2)
    }

    @Test func dueOrderFollowsTimeThenSequence() {
        var queue = DeliveryQueue()
        queue.enqueue(Self.delivery(5, key: "x", due: 30))
        queue.enqueue(Self.delivery(6, key: "y", due: 10))
        queue.enqueue(Self.delivery(7, key: "z", due: 10))
        #expect(queue.takeDue(nowMs: 100)?.sequence == 6)
        #expect(queue.takeDue(nowMs: 100)?.sequence == 7)
        #expect(queue.takeDue(nowMs: 100)?.sequence == 5)
    }

    @Test func replayedDeliveryGoesInSequenceOrder() {
        var queue = DeliveryQueue()
        queue.enqueue(Self.delivery(5, key: "a"))
        queue.enqueue(Self.delivery(9, key: "a"))
        #expect(queue.takeDue(nowMs: 0)?.sequence == 5)
        // A replay of sequence 2 goes behind the head in flight but ahead of 9, which has not gone out.
        queue.enqueue(Self.delivery(2, key: "a"))
        #expect(queue.contains(sequence: 2, orderingKey: "a"))
        queue.settle(key: "a", retryAtMs: nil, attempts: 1)
        #expect(queue.takeDue(nowMs: 0)?.sequence == 2)
        queue.settle(key: "a", retryAtMs: nil, attempts: 1)
        #expect(queue.takeDue(nowMs: 0)?.sequence == 9)
        #expect(queue.takeDue(nowMs: 0) == nil)
    }

    @Test func insertAtWaitingHeadIsNotHandedOutTwice() {
        var queue = DeliveryQueue()
        queue.enqueue(Self.delivery(7, key: "a", due: 50))
        queue.enqueue(Self.delivery(3, key: "a"))
        #expect(queue.takeDue(nowMs: 60)?.sequence == 3)
        // The entry scheduled for 7 is stale while 3 is in flight.
        #expect(queue.takeDue(nowMs: 60) == nil)
        queue.settle(key: "a", retryAtMs: nil, attempts: 1)
        #expect(queue.takeDue(nowMs: 60)?.sequence == 7)
        #expect(queue.takeDue(nowMs: 60) == nil)
        #expect(queue.inFlight == 1)
    }

    @Test func removeWaitingSparesInFlight() {
        var queue = DeliveryQueue()
        var replayed = Self.delivery(1, key: "a")
        replayed.replayID = "rpl_1"
        queue.enqueue(replayed)
        var second = Self.delivery(2, key: "a")
        second.replayID = "rpl_1"
        queue.enqueue(second)
        queue.enqueue(Self.delivery(3, key: "a"))
        #expect(queue.takeDue(nowMs: 0)?.sequence == 1)
        let removed = queue.removeWaiting { $0.replayID == "rpl_1" }
        #expect(removed.map(\.sequence) == [2])
        #expect(queue.count == 2)
        queue.settle(key: "a", retryAtMs: nil, attempts: 1)
        #expect(queue.takeDue(nowMs: 0)?.sequence == 3)
    }

    /// A limited removal takes whole lanes, so it never leaves a port out's later status waiting without the
    /// earlier one, and it leaves a head in flight in place.
    @Test func removeWaitingLimitTakesWholeLanes() {
        var queue = DeliveryQueue()
        for (sequence, key) in [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")] {
            queue.enqueue(Self.delivery(UInt64(sequence), key: key))
        }
        let inFlightHead = queue.takeDue(nowMs: 0)
        #expect(inFlightHead?.sequence == 1)

        let removed = queue.removeWaiting(limit: 2) { _ in true }
        let sequences = Set(removed.map(\.sequence))
        #expect(removed.count >= 2)
        #expect(removed.count <= 3)
        #expect(sequences.contains(3) == sequences.contains(4))
        #expect(sequences.contains(5) == sequences.contains(6))
        #expect(queue.count == 6 - removed.count)
        #expect(queue.inFlight == 1)

        let rest = queue.removeWaiting { _ in true }
        #expect(removed.count + rest.count == 5)
        #expect(queue.count == 1)
        queue.settle(key: "a", retryAtMs: nil, attempts: 1)
        #expect(queue.count == 0)
        #expect(queue.nextDueMs() == nil)
    }

    /// A queue that a removal emptied takes and hands out new deliveries as before.
    @Test func removeWaitingEmptiedQueueTakesMore() {
        var queue = DeliveryQueue()
        for sequence in 1...4 {
            queue.enqueue(Self.delivery(UInt64(sequence), key: "p\(sequence % 2)", due: 50))
        }
        #expect(queue.removeWaiting { _ in true }.count == 4)
        #expect(queue.count == 0)
        queue.enqueue(Self.delivery(9, key: "p1"))
        #expect(queue.count == 1)
        #expect(queue.takeDue(nowMs: 0)?.sequence == 9)
        queue.settle(key: "p1", retryAtMs: nil, attempts: 1)
        #expect(queue.count == 0)
    }

    @Test func madeDueRetriesKeepLaneOrder() {
        var queue = DeliveryQueue()
        queue.enqueue(Self.delivery(1, key: "a"))
        queue.enqueue(Self.delivery(2, key: "a"))
        queue.enqueue(Self.delivery(3, key: "b"))
        queue.enqueue(Self.delivery(4, key: "c"))
        queue.enqueue(Self.delivery(5, key: "d", due: 20))
        #expect(queue.takeDue(nowMs: 0)?.sequence == 1)
        #expect(queue.takeDue(nowMs: 0)?.sequence == 3)
        #expect(queue.takeDue(nowMs: 0)?.sequence == 4)
        queue.settle(key: "a", retryAtMs: 5_000, attempts: 1)
        queue.settle(key: "b", retryAtMs: 9_000, attempts: 3)
        // Lane c's head stays in flight, and lane d's is due before the moment it is made due.
        #expect(queue.makeWaitingDue(nowMs: 100) == 2)
        #expect(queue.takeDue(nowMs: 100)?.sequence == 5)
        #expect(queue.takeDue(nowMs: 100)?.sequence == 1)
        let retried = queue.takeDue(nowMs: 100)
        #expect(retried?.sequence == 3)
        #expect(retried?.attempts == 3)
        // Sequence 2 still waits behind 1, and nothing is left scheduled for the retry times given up.
        #expect(queue.takeDue(nowMs: 100) == nil)
        queue.settle(key: "a", retryAtMs: nil, attempts: 2)
        #expect(queue.takeDue(nowMs: 100)?.sequence == 2)
        queue.settle(key: "b", retryAtMs: 9_000, attempts: 4)
        queue.settle(key: "c", retryAtMs: 9_000, attempts: 1)
        #expect(queue.takeDue(nowMs: 8_999) == nil)
        #expect(queue.nextDueMs() == 9_000)
        #expect(queue.makeWaitingDue(nowMs: 9_500) == 0)
        #expect(queue.inFlight == 2)
    }

    /// A replayed earlier status goes in ahead of a retry that was already waiting. Once the replayed one is sent,
    /// the retry behind it goes at once too, not at its old time.
    @Test func retriesBehindReplayedStatusMadeDue() {
        var queue = DeliveryQueue()
        queue.enqueue(Self.delivery(5, key: "a"))
        #expect(queue.takeDue(nowMs: 0)?.sequence == 5)
        queue.settle(key: "a", retryAtMs: 3_600_000, attempts: 1)
        var replayed = Self.delivery(2, key: "a")
        replayed.replayID = "rpl_1"
        queue.enqueue(replayed)
        #expect(queue.takeDue(nowMs: 0)?.sequence == 2)
        queue.settle(key: "a", retryAtMs: 3_600_000, attempts: 1)
        // Sequence 2 waits at the head and 5 behind it, both an hour out.
        #expect(queue.makeWaitingDue(nowMs: 100) == 2)
        #expect(queue.takeDue(nowMs: 100)?.sequence == 2)
        queue.settle(key: "a", retryAtMs: nil, attempts: 2)
        let behind = queue.takeDue(nowMs: 100)
        #expect(behind?.sequence == 5)
        #expect(behind?.attempts == 1)
    }

    /// Deliveries behind a head in flight are made due too, and go once the head settles.
    @Test func retriesBehindInFlightHeadMadeDue() {
        var queue = DeliveryQueue()
        queue.enqueue(Self.delivery(5, key: "a"))
        #expect(queue.takeDue(nowMs: 0)?.sequence == 5)
        queue.settle(key: "a", retryAtMs: 3_600_000, attempts: 1)
        queue.enqueue(Self.delivery(2, key: "a"))
        #expect(queue.takeDue(nowMs: 0)?.sequence == 2)
        #expect(queue.makeWaitingDue(nowMs: 100) == 1)
        #expect(queue.takeDue(nowMs: 100) == nil)
        queue.settle(key: "a", retryAtMs: nil, attempts: 1)
        #expect(queue.takeDue(nowMs: 100)?.sequence == 5)
    }
}
