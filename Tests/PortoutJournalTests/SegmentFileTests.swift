import Foundation
import PortoutTestSupport
import Testing

@testable import PortoutJournal

/// The reasons a segment scan gives for damage and torn tails.
struct SegmentFileTests {
    static let record = JournalRecord.attempt(
        AttemptRecord(
            eventSequence: 1,
            tenant: "t1",
            destination: "billing",
            attempt: 1,
            outcome: .delivered,
            httpStatus: 204,
            atMs: 1_767_225_600_000,
            nextAttemptAtMs: nil,
            error: ""
        )
    )

    static var frame: [UInt8] {
        var bytes: [UInt8] = []
        SegmentFile.frame(Self.record.encoded(), into: &bytes)
        return bytes
    }

    /// Scans `bytes` and returns the result with the offset of every valid frame.
    static func scan(_ bytes: [UInt8]) -> (result: SegmentFile.ScanResult, offsets: [Int]) {
        var offsets: [Int] = []
        let result = SegmentFile.scan(bytes) { _, offset in offsets.append(offset) }
        return (result, offsets)
    }

    @Test func damageReasonsNameTheFault() {
        var badKind = Self.frame
        badKind[SegmentFile.frameHeaderBytes] = 9
        var badChecksum = Self.frame
        badChecksum[4] ^= 0xFF
        let cases: [(damage: [UInt8], reason: String)] = [
            ([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0], "frame length 4294967295 is implausible"),
            (badKind, "frame holds no known record kind"),
            (badChecksum, "frame checksum does not match"),
        ]
        for (damage, reason) in cases {
            let bytes = SegmentFile.magic + damage + Self.frame
            let (result, offsets) = Self.scan(bytes)
            #expect(result.damage.map(\.reason) == [reason])
            #expect(result.damage.first?.start == SegmentFile.magic.count)
            #expect(result.damage.first?.end == SegmentFile.magic.count + damage.count)
            #expect(offsets == [SegmentFile.magic.count + damage.count])
            #expect(result.tornTail == nil)
        }
    }

    @Test func tornTailReasonsNameTheFault() {
        var lastByteFlipped = Self.frame
        lastByteFlipped[lastByteFlipped.count - 1] ^= 0xFF
        let cases: [(tail: [UInt8], reason: String)] = [
            (Array(Self.frame.prefix(5)), "frame header is cut short"),
            (Array(Self.frame.dropLast(3)), "frame payload is cut short"),
            (lastByteFlipped, "frame checksum does not match"),
        ]
        for (tail, reason) in cases {
            let bytes = SegmentFile.magic + Self.frame + tail
            let (result, offsets) = Self.scan(bytes)
            #expect(result.tornTail == reason)
            #expect(result.damage.isEmpty)
            #expect(result.validBytes == SegmentFile.magic.count + Self.frame.count)
            #expect(offsets == [SegmentFile.magic.count])
        }
    }

    /// Recovery reads every segment through one buffer, so a file shorter than the one before must not keep the
    /// longer file's bytes past its end, and a longer one must be read whole.
    @Test func readerReusesBufferForFilesOfAnySize() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let sizes = [70_000, 3, 0, 150_000, 69_999, 160_000]
        let reader = SegmentReader()
        defer { withExtendedLifetime(reader) {} }
        for (index, size) in sizes.enumerated() {
            let contents = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) }
            let path = directory.file("\(index).seg")
            try Data(contents).write(to: URL(fileURLWithPath: path))
            #expect(Array(try reader.read(path)) == contents, "file of \(size) bytes")
        }
        #expect(throws: JournalError.self) { try reader.read(directory.file("missing.seg")) }
    }
}
