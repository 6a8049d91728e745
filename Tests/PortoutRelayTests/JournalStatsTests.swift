import Foundation
import PortoutCore
import PortoutJournal
import PortoutTestSupport
import Testing

@testable import PortoutRelay

struct JournalStatsTests {
    /// Runs `journal stats` and returns its summary line, parsed, with the damage it reported.
    static func stats(_ dataDirectory: String) throws -> (JSONObject, [JournalCommands.SegmentDamage]) {
        var lines: [String] = []
        let damage = try JournalCommands.stats(dataDirectory: dataDirectory, retentionSeconds: nil) { lines.append($0) }
        let summary = try #require(try JSONParser.parse(lines[0]).objectValue)
        return (summary, damage)
    }

    /// A replay record of a delivery still unsettled queued nothing, which the replay counts as `alreadyPending`,
    /// so it is not counted as a replayed delivery.
    @Test func replayOfPendingNotCounted() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let data = try DeliveryHistoryTests.write([
            .event(DeliveryHistoryTests.event(1)), .attempt(DeliveryHistoryTests.attempt(1, 1, .delivered)),
            DeliveryHistoryTests.replay(1, "rpl_a"), DeliveryHistoryTests.replay(1, "rpl_b"),
        ], in: directory)
        let (summary, _) = try Self.stats(data)
        #expect(summary["replayedDeliveries"] == 1)
        #expect(summary["unsettledDeliveries"] == 1)
    }

    /// Two damaged records in one segment are two damaged regions but one damaged segment.
    @Test func damageCountsSegmentsAndRegions() throws {
        let harness = try RelayHarness(verify: #"{"secrets": ["\#(RelayHarness.inboundSecret)"]}"#)
        defer { harness.finish() }
        for index in 0..<4 {
            #expect(try harness.post(Events.portOut("pout_stats_\(index)", status: "initiated")).status == 202)
        }
        harness.stop()
        let dataDirectory = harness.directory.path + "/data"
        var locations: [JournalLocation] = []
        _ = try JournalCommands.forEachRecord(dataDirectory) { _, location in locations.append(location) }
        #expect(locations.count == 4)
        #expect(Set(locations.map(\.segment)).count == 1)
        let path = dataDirectory + "/journal/" + SegmentFile.name(for: locations[0].segment)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        // A byte in the middle of the first and of the third record's payload. A damaged last record would be a
        // torn tail, which a crash leaves and which is not counted as damage.
        for location in [locations[0], locations[2]] {
            try handle.seek(toOffset: UInt64(location.offset) + UInt64(location.length / 2))
            let original = try #require(try handle.read(upToCount: 1)?.first)
            try handle.seek(toOffset: UInt64(location.offset) + UInt64(location.length / 2))
            try handle.write(contentsOf: [original ^ 0xFF])
        }
        try handle.close()

        let (summary, _) = try Self.stats(dataDirectory)
        #expect(summary["damagedSegments"] == .number(1))
        #expect(summary["damagedRegions"] == .number(2))
        #expect(summary["events"] == .number(2))
    }

    /// Retention removes only the oldest segments, so a number missing between two segments is reported as
    /// damage by verify and stats.
    @Test func missingSegmentIsDamage() throws {
        let harness = try RelayHarness(verify: #"{"secrets": ["\#(RelayHarness.inboundSecret)"]}"#)
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_gap", status: "initiated")).status == 202)
        harness.stop()
        let dataDirectory = harness.directory.path + "/data"
        let journal = dataDirectory + "/journal/"
        let segment = try #require(try SegmentFile.segments(in: journal).last)
        // A later segment two numbers on leaves one number missing between them.
        try FileManager.default.copyItem(
            atPath: journal + SegmentFile.name(for: segment), toPath: journal + SegmentFile.name(for: segment + 2))

        var verifyLines: [String] = []
        #expect(try JournalCommands.verify(dataDirectory: dataDirectory) { verifyLines.append($0) } == false)
        #expect(verifyLines.contains("\(SegmentFile.name(for: segment + 2)): segment \(segment + 1) is missing before it"))
        let (summary, damage) = try Self.stats(dataDirectory)
        #expect(damage.first?.segment == SegmentFile.name(for: segment + 2))
        #expect(damage.first?.missingBefore == 1)
        #expect(summary["missingSegments"] == .number(1))
        // The copy repeats the first segment's event, which is also reported.
        #expect(damage.dropFirst().map(\.problem) == [
            "1 event out of sequence, the first with sequence 1 after 1, as when records are copied or restored into the journal"
        ])
    }

    /// A segment copied under the next number has no gap before it, but its events repeat earlier sequences,
    /// which verify, stats and dump all report as damage.
    @Test func copiedSegmentIsDamage() throws {
        let harness = try RelayHarness(verify: #"{"secrets": ["\#(RelayHarness.inboundSecret)"]}"#)
        defer { harness.finish() }
        for status in ["initiated", "processing"] {
            #expect(try harness.post(Events.portOut("pout_copy", status: status)).status == 202)
        }
        harness.stop()
        let dataDirectory = harness.directory.path + "/data"
        let journal = dataDirectory + "/journal/"
        let segment = try #require(try SegmentFile.segments(in: journal).last)
        try FileManager.default.copyItem(
            atPath: journal + SegmentFile.name(for: segment), toPath: journal + SegmentFile.name(for: segment + 1))

        var verifyLines: [String] = []
        #expect(try JournalCommands.verify(dataDirectory: dataDirectory) { verifyLines.append($0) } == false)
        let copyLine = try #require(verifyLines.last)
        #expect(copyLine.contains("2 events out of sequence, the first with sequence 1 after 2"), "\(copyLine)")
        #expect(verifyLines.first?.contains("out of sequence") == false)
        let (summary, damage) = try Self.stats(dataDirectory)
        #expect(damage.map(\.segment) == [SegmentFile.name(for: segment + 1)])
        #expect(summary["damagedSegments"] == .number(1))
        #expect(summary["events"] == .number(4))
    }

    /// Events carry account numbers, so the journal's directory and files are the owner's alone, whatever the umask.
    @Test func journalFilesAreOwnerOnly() throws {
        let harness = try RelayHarness(verify: #"{"secrets": ["\#(RelayHarness.inboundSecret)"]}"#)
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_mode", status: "initiated")).status == 202)
        let journalDirectory = harness.directory.path + "/data/journal"
        var paths = [harness.directory.path + "/data", journalDirectory]
        paths += try FileManager.default.contentsOfDirectory(atPath: journalDirectory).map { journalDirectory + "/" + $0 }
        for path in paths {
            let mode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
            #expect(mode & 0o077 == 0, "\(path) has mode \(String(mode, radix: 8))")
        }
    }
}
