import Dispatch
import Foundation
import PortoutCore
import PortoutDelivery
import PortoutJournal
import PortoutTestSupport
import Testing

@testable import PortoutRelay

/// Delivery histories read from journals written record by record, for orders of records that end-to-end
/// tests reach only by timing.
@Suite struct DeliveryHistoryTests {
    static let acceptedAtMs: Int64 = 1_700_000_000_000

    static func event(_ sequence: UInt64) -> EventRecord {
        EventRecord(
            sequence: sequence, acceptedAtMs: Self.acceptedAtMs + Int64(sequence), isStale: false, isBare: false,
            status: .processing, dedupeKey: DigestKey(high: sequence, low: 1), lifecycleKey: nil, tenant: "t1",
            eventID: "evt_\(sequence)", type: "com.gigs.portOut.processing", portOutID: "pout_\(sequence)",
            project: "acme-mobile", destinations: ["crm"], body: Array(#"{"x":1}"#.utf8))
    }

    static func attempt(_ sequence: UInt64, _ number: Int, _ outcome: AttemptOutcome) -> AttemptRecord {
        AttemptRecord(
            eventSequence: sequence, tenant: "t1", destination: "crm", attempt: number, outcome: outcome,
            httpStatus: outcome == .delivered ? 204 : 500, atMs: Self.acceptedAtMs + 1000 * Int64(number),
            nextAttemptAtMs: outcome == .retryScheduled ? Self.acceptedAtMs + 60_000 : nil,
            error: outcome == .delivered ? "" : "destination answered 500")
    }

    static func replay(_ sequence: UInt64, _ id: String) -> JournalRecord {
        let event = Self.event(sequence)
        let location = JournalLocation(segment: 1, offset: 0, length: 1)
        return .replay(ReplayRecord(
            replayID: id, destination: "crm", event: EventSummary(event, location: location), atMs: Self.acceptedAtMs))
    }

    /// Writes `records` to a new journal in `directory`'s data directory, and returns that data directory.
    static func write(_ records: [JournalRecord], in directory: TemporaryDirectory) throws -> String {
        let data = directory.path + "/data"
        let journal = try Journal.open(
            directory: data + "/journal", segmentBytes: 1 << 20, logger: Logger(level: .error)
        ) { _, _ in }
        let done = DispatchSemaphore(value: 0)
        journal.appendAll(records) { _ in done.signal() }
        done.wait()
        journal.close()
        return data
    }

    static func history(_ records: [JournalRecord], filter: DeliveryFilter = DeliveryFilter()) throws
        -> [DeliveryHistory.Delivery]
    {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let data = try Self.write(records, in: directory)
        return try DeliveryHistory.page(dataDirectory: data, filter: filter, after: nil, limit: 10).get().deliveries
    }

    static func stepNames(_ delivery: DeliveryHistory.Delivery?) -> [String] {
        (delivery?.steps ?? []).map { step in
            switch step {
            case .attempt(let attempt): return attempt.outcome.name
            case .queuedByReplay(let id, _): return id
            }
        }
    }

    /// A replay journals every match before the engine leaves out those already pending, so its record for a
    /// delivery still retrying queued nothing.
    @Test func replayOfPendingDeliveryAddsNothing() throws {
        let found = try Self.history([
            .event(Self.event(1)), .attempt(Self.attempt(1, 1, .retryScheduled)), Self.replay(1, "rpl_a"),
        ])
        #expect(found.first?.state == .retrying)
        #expect(Self.stepNames(found.first) == ["retryScheduled"])
    }

    /// Two replays of a delivered delivery: the second finds the first's copy pending, and withdrawing that
    /// copy leaves the delivery delivered.
    @Test func withdrawnCopyRestoresDelivered() throws {
        let found = try Self.history([
            .event(Self.event(1)), .attempt(Self.attempt(1, 1, .delivered)), Self.replay(1, "rpl_a"),
            Self.replay(1, "rpl_b"), .attempt(Self.attempt(1, 1, .cancelled)),
        ])
        #expect(found.first?.state == .delivered)
        #expect(Self.stepNames(found.first) == ["delivered", "rpl_a", "cancelled"])
    }

    /// A replay journaled while its owner was still retrying, and journaled again after the owner's dead letter,
    /// applies from its second record.
    @Test func replayJournaledAgainApplies() throws {
        let found = try Self.history([
            .event(Self.event(1)), Self.replay(1, "rpl_a"), .attempt(Self.attempt(1, 1, .deadLettered)),
            Self.replay(1, "rpl_a"), .attempt(Self.attempt(1, 1, .delivered)),
        ])
        #expect(found.first?.state == .delivered)
        #expect(Self.stepNames(found.first) == ["deadLettered", "rpl_a", "delivered"])
    }

    /// After retention removed an event, a replay of it still names the delivery, as a restart rebuilds it.
    @Test func replayOfRemovedEventIsListed() throws {
        let records: [JournalRecord] = [
            Self.replay(1, "rpl_a"), .attempt(Self.attempt(1, 1, .deadLettered)), .event(Self.event(2)),
            Self.replay(2, "rpl_b"),
        ]
        let found = try Self.history(records)
        #expect(found.map(\.key.sequence) == [1, 2])
        #expect(found.first?.isEventRemoved == true)
        #expect(found.first?.state == .deadLettered)
        #expect(Self.stepNames(found.first) == ["rpl_a", "deadLettered"])
        // The event of sequence 2 is in the journal, and its pending delivery keeps its owner.
        #expect(found.last?.isEventRemoved == false)
        #expect(Self.stepNames(found.last) == [])

        var filter = DeliveryFilter()
        filter.eventID = "evt_2"
        #expect(try Self.history(records, filter: filter).map(\.key.sequence) == [2])
    }

    /// A dead letter of an event that retention removed cannot be sent again, so a start does not list it, as
    /// the running relay stopped listing it when retention removed the event.
    @Test func deadLetterOfRemovedEventNotRestored() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        _ = try Self.write([
            Self.replay(1, "rpl_a"), .attempt(Self.attempt(1, 1, .deadLettered)), .event(Self.event(2)),
            .attempt(Self.attempt(2, 1, .deadLettered)),
        ], in: directory)
        let harness = try RelayHarness(directory: directory)
        defer { harness.finish() }
        #expect(harness.relay?.deadLetters.count == 1)
        #expect(harness.relay?.deadLetters.matching(DeliveryFilter()).map(\.id) == ["dl_2_crm"])
        harness.stop()
        var dumped: [String] = []
        try JournalCommands.dump(dataDirectory: directory.path + "/data", bodies: false, deadLettersOnly: true) {
            dumped.append($0)
        }
        #expect(dumped.count == 1)
        #expect(dumped.first?.contains(#""sequence":2"#) == true)
    }

    @Test func withdrawnCopyOfRemovedEvent() throws {
        let found = try Self.history([
            .event(Self.event(2)), Self.replay(1, "rpl_a"), .attempt(Self.attempt(1, 0, .cancelled)),
        ])
        #expect(found.map(\.key.sequence) == [1, 2])
        #expect(found.first?.state == .withdrawn)
        #expect(found.first?.isEventRemoved == true)
        #expect(Self.stepNames(found.first) == ["rpl_a", "cancelled"])
    }

    /// Replays of removed events come after newer events, so they displace kept deliveries of those events.
    @Test func removedEventsPageInOrder() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let data = try Self.write([
            .event(Self.event(5)), .event(Self.event(6)), Self.replay(2, "rpl_a"), Self.replay(1, "rpl_a"),
        ], in: directory)
        var after: DeliveryKey?
        var pages: [[UInt64]] = []
        var more = true
        while more && pages.count < 10 {
            let page = try DeliveryHistory.page(
                dataDirectory: data, filter: DeliveryFilter(), after: after, limit: 1
            ).get()
            pages.append(page.deliveries.map(\.key.sequence))
            after = page.deliveries.last?.key
            more = page.hasMore
        }
        #expect(pages == [[1], [2], [5], [6]])
    }

    /// A 410 disables the destination, so its step names no next attempt time. A withdrawal of a copy that was
    /// in flight keeps the failed attempt's details, and one of a copy never sent has none.
    @Test func stepsAsJSON() throws {
        var gone = Self.attempt(1, 1, .retryScheduled)
        gone.httpStatus = 410
        var inFlight = Self.attempt(1, 2, .cancelled)
        inFlight.error = "timed out; withdrawn instead of retried"
        let found = try Self.history([
            .event(Self.event(1)), .attempt(gone), .attempt(Self.attempt(1, 2, .delivered)), Self.replay(1, "rpl_a"),
            .attempt(inFlight), Self.replay(1, "rpl_b"), .attempt(Self.attempt(1, 0, .cancelled)),
        ])
        let steps = found.first?.jsonValue.objectValue?["steps"]?.arrayValue?.compactMap(\.objectValue) ?? []
        let kinds: [JSONValue?] = ["attempt", "attempt", "queuedByReplay", "withdrawn", "queuedByReplay", "withdrawn"]
        #expect(steps.map { $0["kind"] } == kinds)
        #expect(steps.first?["nextAttemptAt"] == .null)
        #expect(steps.first?["httpStatus"] == 410)
        #expect(steps[3]["attempt"] == 2)
        #expect(steps[3]["error"] == "timed out; withdrawn instead of retried")
        #expect(steps[5]["attempt"] == nil)
        #expect(found.first?.state == .delivered)
    }

    @Test func jobKeepsFirstHundredIDs() {
        let ids = (1...150).map { "dl_\($0)_crm" }
        let job = ReplayJob(kind: "redelivery", filter: DeliveryFilter(), deadLetterIDs: ids)
        #expect(job.deadLetterIDs == Array(ids.prefix(100)))
        #expect(job.deadLetterIDCount == 150)
        #expect(job.jsonValue.objectValue?["idCount"] == 150)
    }

    /// A damaged record is missing from the page, and the page lists the damage so that the command can report it.
    @Test func damageIsReported() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let data = try Self.write([.event(Self.event(1)), .event(Self.event(2))], in: directory)
        var locations: [JournalLocation] = []
        _ = try JournalCommands.forEachRecord(data) { _, location in locations.append(location) }
        let path = data + "/journal/" + SegmentFile.name(for: locations[0].segment)
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: UInt64(locations[0].offset) + UInt64(locations[0].length / 2))
        try handle.write(contentsOf: [0xFF, 0x00, 0xFF])
        try handle.close()

        let page = try DeliveryHistory.page(dataDirectory: data, filter: DeliveryFilter(), after: nil, limit: 10).get()
        #expect(page.deliveries.map(\.key.sequence) == [2])
        #expect(page.damage.count == 1)
    }

    @Test func idsHaveOneForm() {
        let expected = DeliveryKey(sequence: 42, destination: "billing_eu")
        #expect(DeliveryKey(id: "dlv_42_billing_eu", prefix: "dlv_") == expected)
        for id in ["dlv_+42_billing", "dlv_042_billing", "dlv_42_", "dl_42_billing", "dlv__billing"] {
            #expect(DeliveryKey(id: id, prefix: "dlv_") == nil, "\(id)")
        }
    }
}
