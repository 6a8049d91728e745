import Foundation
import PortoutCore
import PortoutJournal
import PortoutTestSupport
import Synchronization
import Testing

@testable import PortoutRelay

/// Journal retention: old settled segments go, segments with unsettled deliveries stay.
@Suite(.serialized)
struct RetentionTests {
    static func info(_ segment: UInt64, ageSeconds: Int64, now: Int64 = 10_000_000) -> JournalRetention.SegmentInfo {
        JournalRetention.SegmentInfo(segment: segment, bytes: 100, modifiedAtMs: now - ageSeconds * 1000)
    }

    @Test func planRemovesOldPrefixOnly() {
        let now: Int64 = 10_000_000
        let segments = [
            Self.info(1, ageSeconds: 5000), Self.info(2, ageSeconds: 4000), Self.info(3, ageSeconds: 10),
            Self.info(4, ageSeconds: 5000), Self.info(5, ageSeconds: 5000),
        ]
        let plan = JournalRetention.plan(segments, nowMs: now, retentionSeconds: 3600, oldestUnsettledSegment: nil)
        // Segment 4 is old, but segment 3 before it is not, and only a prefix goes.
        #expect(plan.removable.map(\.segment) == [1, 2])
        #expect(plan.removableBytes == 200)
        let pinned = JournalRetention.plan(segments, nowMs: now, retentionSeconds: 3600, oldestUnsettledSegment: 2)
        #expect(pinned.removable.map(\.segment) == [1])
        #expect(pinned.keptForUnsettled == 2)
        // The active segment is never removed, however old, nor any after it.
        let single = JournalRetention.plan([Self.info(9, ageSeconds: 9999)], nowMs: now, retentionSeconds: 60, oldestUnsettledSegment: nil)
        #expect(single.removable.isEmpty)
        let writing = JournalRetention.plan(segments, nowMs: now, retentionSeconds: 1, oldestUnsettledSegment: nil, activeSegment: 2)
        #expect(writing.removable.map(\.segment) == [1])
        // Offline, an empty newest segment is one prepared ahead, so the one before it is taken as active.
        var prepared = [Self.info(1, ageSeconds: 9999), Self.info(2, ageSeconds: 9999), Self.info(3, ageSeconds: 9999)]
        prepared[2].containsRecords = false  // the segment header alone, or with preallocated zeros
        #expect(JournalRetention.plan(prepared, nowMs: now, retentionSeconds: 1, oldestUnsettledSegment: nil).removable.map(\.segment) == [1])
    }

    static let key = "retention-read-key-0001"

    @Test func retentionKeepsSegmentsWithUnsettledDeliveries() throws {
        let holding = Atomic<Bool>(true)
        let sink = try RecordingSink { _, received in
            .init(status: holding.load(ordering: .relaxed) && received.portOut == "pout_pin" ? 503 : 204)
        }
        defer { sink.shutdown() }
        let harness = try RelayHarness(
            destinations: DeliveryTests.destination(sink.url, retrySchedule: "[0.2]", maxAttempts: 1000),
            tenantExtra: #""apiKeys": ["\#(Self.key)"]"#,
            extra: #""journal": {"segmentBytes": 65536, "retentionSeconds": 60}"#)
        defer { harness.finish() }
        for index in 0..<400 {
            let id = index == 150 ? "pout_pin" : "pout_\(index)"
            #expect(try harness.post(Events.portOut(id, status: "initiated")).status == 202)
        }
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.delivered == 399 })
        let journalDirectory = harness.directory.path + "/data/journal"
        let segments = try SegmentFile.segments(in: journalDirectory)
        #expect(segments.count >= 4)
        // Every segment is made two hours old; the active one must still be kept.
        for segment in segments {
            try FileManager.default.setAttributes(
                [.modificationDate: Date().addingTimeInterval(-7200)],
                ofItemAtPath: journalDirectory + "/" + SegmentFile.name(for: segment))
        }
        let pinnedSegment = try #require(try Self.segment(of: "pout_pin", harness: harness))
        #expect(pinnedSegment > segments[0])

        var preview: [String] = []
        try JournalCommands.stats(dataDirectory: harness.directory.path + "/data", retentionSeconds: 60) { preview.append($0) }
        let retention = try JSONParser.parse(preview[0]).objectValue?["retention"]?.objectValue
        #expect(retention?["removableSegments"] == .number(Double(pinnedSegment - segments[0])))
        #expect(retention?["keptForUnsettled"] == .string(SegmentFile.name(for: pinnedSegment)))

        let report = try #require(harness.relay!.applyRetention())
        #expect(report.removedSegments == Array(segments[0]..<pinnedSegment))
        #expect(report.keptForUnsettled == pinnedSegment)
        #expect(report.forgottenPortOuts > 0)
        #expect(try Self.retrieve("pout_0", harness: harness) == 404)
        #expect(try Self.retrieve("pout_399", harness: harness) == 200)

        // Once the held delivery succeeds, the old segments after it can go too.
        holding.store(false, ordering: .relaxed)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.delivered == 400 })
        let second = try #require(harness.relay!.applyRetention())
        let active = harness.relay!.journal.activeSegment
        #expect(second.removedSegments == Array(pinnedSegment..<active))
        #expect(second.keptForUnsettled == nil)
        #expect(try SegmentFile.segments(in: journalDirectory).first == active)

        try harness.restart()
        #expect(try Self.retrieve("pout_399", harness: harness) == 200)
        #expect(harness.relay!.deliveryStatistics().first?.pending == 0)
        #expect(try JournalCommands.verify(dataDirectory: harness.directory.path + "/data") { _ in })
    }

    static func retrieve(_ id: String, harness: RelayHarness) throws -> Int? {
        try harness.client().request(
            "GET", "/projects/acme-mobile/portOuts/\(id)", headers: [("Authorization", "Bearer \(Self.key)")])?.status
    }

    /// Returns the segment that contains the event of port out `id`.
    static func segment(of id: String, harness: RelayHarness) throws -> UInt64? {
        var found: UInt64?
        try JournalCommands.dump(dataDirectory: harness.directory.path + "/data", bodies: false, deadLettersOnly: false) { line in
            guard let object = try? JSONParser.parse(line).objectValue, object["portOut"] == .string(id),
                let location = object["location"]?.stringValue
            else { return }
            found = UInt64(location.prefix { $0.isNumber })
        }
        return found
    }
}
