import PortoutCore
import PortoutDelivery
import PortoutJournal
import Testing

@testable import PortoutRelay

/// What a start resumes: each event's deliveries that the journal's attempt and replay records leave unsettled,
/// with their attempt counts, in acceptance order.
struct UnsettledDeliveriesTests {
    static func event(_ sequence: UInt64, destinations: [String]) -> (EventRecord, JournalLocation) {
        let record = EventRecord(
            sequence: sequence, acceptedAtMs: 1_000 + Int64(sequence), isStale: false, isBare: false,
            status: .initiated, dedupeKey: DigestKey(high: sequence, low: 1), lifecycleKey: nil, tenant: "t1",
            eventID: "evt_\(sequence)", type: "com.gigs.portOut.initiated", portOutID: "pout_\(sequence)",
            project: "acme-mobile", destinations: destinations, body: [])
        return (record, JournalLocation(segment: 1, offset: Int64(sequence) * 100, length: 90))
    }

    static func attempt(_ sequence: UInt64, _ destination: String, _ number: Int, _ outcome: AttemptOutcome)
        -> AttemptRecord
    {
        AttemptRecord(
            eventSequence: sequence, tenant: "t1", destination: destination, attempt: number, outcome: outcome,
            httpStatus: outcome == .delivered ? 204 : 500, atMs: 5_000,
            nextAttemptAtMs: outcome == .retryScheduled ? 9_000 : nil, error: outcome == .delivered ? "" : "HTTP 500")
    }

    static func summary(_ deliveries: [PendingDelivery]) -> [String] {
        deliveries.map { "\($0.sequence)/\($0.destination)/\($0.attempts)/\($0.nextAttemptAtMs)" }
    }

    @Test func attemptsSettleRetryAndDeadLetter() {
        var unsettled = UnsettledDeliveries()
        // Added out of order, as a copied segment or a replay can leave them. They come back in sequence order.
        for sequence: UInt64 in [3, 1, 2] {
            let (record, location) = Self.event(sequence, destinations: ["crm", "billing"])
            unsettled.add(record, at: location)
        }
        #expect(unsettled.apply(Self.attempt(1, "billing", 1, .delivered)) == nil)
        #expect(unsettled.apply(Self.attempt(2, "crm", 1, .retryScheduled)) == nil)
        #expect(unsettled.apply(Self.attempt(2, "crm", 2, .retryScheduled)) == nil)
        let deadLetter = unsettled.apply(Self.attempt(3, "billing", 4, .deadLettered))
        #expect(deadLetter?.event.eventID == "evt_3")
        #expect(deadLetter?.destination == "billing")
        #expect(deadLetter?.attempts == 4)
        // An attempt for a delivery already settled, or for an event the journal no longer has, changes nothing.
        #expect(unsettled.apply(Self.attempt(1, "billing", 2, .deadLettered)) == nil)
        #expect(unsettled.apply(Self.attempt(9, "crm", 1, .delivered)) == nil)

        #expect(Self.summary(unsettled.pendingDeliveries()) == ["1/crm/0/0", "2/billing/0/0", "2/crm/2/9000", "3/crm/0/0"])
        #expect(unsettled.pendingDeliveries().map(\.acceptedAtMs) == [1_001, 1_002, 1_002, 1_003])

        #expect(unsettled.apply(Self.attempt(1, "crm", 1, .delivered)) == nil)
        #expect(unsettled.apply(Self.attempt(3, "crm", 1, .delivered)) == nil)
        #expect(Self.summary(unsettled.pendingDeliveries()) == ["2/billing/0/0", "2/crm/2/9000"])
        // Settling an event's first destination leaves the others pending, and a retry keeps its attempt count.
        #expect(unsettled.apply(Self.attempt(2, "crm", 3, .delivered)) == nil)
        #expect(unsettled.apply(Self.attempt(2, "billing", 1, .retryScheduled)) == nil)
        #expect(Self.summary(unsettled.pendingDeliveries()) == ["2/billing/1/9000"])
        #expect(unsettled.apply(Self.attempt(2, "billing", 2, .delivered)) == nil)
        #expect(unsettled.pendingDeliveries().isEmpty)
    }

    @Test func replaysReopenAndAreTallied() {
        var unsettled = UnsettledDeliveries()
        let (record, location) = Self.event(7, destinations: ["crm"])
        unsettled.add(record, at: location)
        #expect(unsettled.apply(Self.attempt(7, "crm", 1, .delivered)) == nil)
        #expect(unsettled.pendingDeliveries().isEmpty)

        let summary = EventSummary(record, location: location)
        unsettled.reopen(ReplayRecord(replayID: "rpl_1", destination: "crm", event: summary, atMs: 8_000))
        // A second replay of a delivery still pending leaves it with the first.
        unsettled.reopen(ReplayRecord(replayID: "rpl_2", destination: "crm", event: summary, atMs: 8_500))
        // A replay can reach a destination the event did not go to at first.
        unsettled.reopen(ReplayRecord(replayID: "rpl_2", destination: "billing", event: summary, atMs: 8_500))
        let pending = unsettled.pendingDeliveries()
        #expect(Self.summary(pending) == ["7/billing/0/0", "7/crm/0/0"])
        #expect(pending.map(\.replayID) == ["rpl_2", "rpl_1"])
        // A replayed delivery's age counts from when the replay queued it.
        #expect(pending.map(\.acceptedAtMs) == [8_500, 8_000])

        #expect(unsettled.apply(Self.attempt(7, "crm", 1, .delivered)) == nil)
        #expect(unsettled.apply(Self.attempt(7, "billing", 1, .retryScheduled)) == nil)
        #expect(unsettled.apply(Self.attempt(7, "billing", 2, .deadLettered)) != nil)
        #expect(unsettled.replayTallies["rpl_1"] == ReplayTally(delivered: 1))
        #expect(unsettled.replayTallies["rpl_2"] == ReplayTally(deadLettered: 1))
        #expect(unsettled.pendingDeliveries().isEmpty)
    }

    @Test func eventAddedAgainReplacesItsDeliveries() {
        var unsettled = UnsettledDeliveries()
        let (first, location) = Self.event(4, destinations: ["crm", "billing"])
        unsettled.add(first, at: location)
        #expect(unsettled.apply(Self.attempt(4, "crm", 1, .retryScheduled)) == nil)
        let (again, _) = Self.event(4, destinations: ["crm"])
        unsettled.add(again, at: location)
        #expect(Self.summary(unsettled.pendingDeliveries()) == ["4/crm/0/0"])
        // A destination named twice for one event gets one delivery.
        let (twice, location5) = Self.event(6, destinations: ["crm", "crm", "billing"])
        unsettled.add(twice, at: location5)
        #expect(Self.summary(unsettled.pendingDeliveries()) == ["4/crm/0/0", "6/billing/0/0", "6/crm/0/0"])
        // An event with no destinations has nothing to deliver.
        let (none, elsewhere) = Self.event(5, destinations: [])
        unsettled.add(none, at: elsewhere)
        #expect(unsettled.pendingDeliveries().count == 3)
    }

    /// Events keep the bytes of their own type, even when another event's type is the same text in another
    /// Unicode spelling.
    @Test func deadLettersKeepTypeBytes() {
        var unsettled = UnsettledDeliveries()
        let types = ["com.gigs.caf\u{E9}", "com.gigs.cafe\u{301}", "com.gigs.caf\u{E9}"]
        for (index, type) in types.enumerated() {
            var (record, location) = Self.event(UInt64(index + 1), destinations: ["crm"])
            record.type = type
            unsettled.add(record, at: location)
        }
        let deadLetters = (1...3).compactMap { unsettled.apply(Self.attempt(UInt64($0), "crm", 1, .deadLettered)) }
        #expect(deadLetters.map { Array($0.event.type.utf8) } == types.map { Array($0.utf8) })
    }
}
