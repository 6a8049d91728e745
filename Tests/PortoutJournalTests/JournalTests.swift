import CCRC32C
import Foundation
import PortoutCore
import PortoutTestSupport
import Synchronization
import Testing

@testable import PortoutJournal

@Suite struct JournalTests {
    static func event(_ sequence: UInt64, body: String = #"{"x":1}"#) -> JournalRecord {
        .event(
            EventRecord(
                sequence: sequence, acceptedAtMs: 1_700_000_000_000 + Int64(sequence), isStale: sequence % 2 == 0,
                isBare: false, status: .processing, dedupeKey: DigestKey(high: sequence, low: ~sequence),
                lifecycleKey: sequence % 3 == 0 ? nil : DigestKey(high: ~sequence, low: sequence), tenant: "t1",
                eventID: "evt_\(sequence)", type: "com.gigs.portOut.processing", portOutID: "pout_\(sequence)",
                project: "acme-mobile", destinations: ["billing", "crm"], body: Array(body.utf8)))
    }

    static func open(_ directory: String, segmentBytes: Int = 1 << 20) throws -> (Journal, [JournalRecord]) {
        var records: [JournalRecord] = []
        let journal = try Journal.open(directory: directory, segmentBytes: segmentBytes, logger: Logger(level: .error)) {
            record, _ in records.append(record)
        }
        return (journal, records)
    }

    /// Appends and waits for each completion; returns the locations.
    @discardableResult
    static func appendAll(_ journal: Journal, _ records: [JournalRecord]) -> [Result<JournalLocation, JournalError>] {
        let results = Locked<[Int: Result<JournalLocation, JournalError>]>([:])
        let done = DispatchSemaphore(value: 0)
        for (index, record) in records.enumerated() {
            journal.append(record) { result in
                results.withLock { $0[index] = result }
                done.signal()
            }
        }
        for _ in records {
            done.wait()
        }
        return results.withLock { stored in (0..<records.count).map { stored[$0]! } }
    }

    @Test func crc32cKnownValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
    }

    /// The instruction path and the table path agree at every length and alignment up to a few words.
    @Test func crc32cPathsAgree() {
        let bytes = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
        bytes.withUnsafeBytes { buffer in
            for start in 0..<9 {
                for end in stride(from: start, through: buffer.count, by: 7) {
                    let slice = UnsafeRawBufferPointer(rebasing: buffer[start..<end])
                    #expect(
                        CRC32C.checksum(slice) == portout_crc32c_portable(0, slice.baseAddress, slice.count),
                        "bytes \(start)..<\(end)")
                }
            }
        }
    }

    @Test func recordsSurviveReopen() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let written = (1...50).map { Self.event($0) } + [
            .attempt(AttemptRecord(
                eventSequence: 3, tenant: "t1", destination: "crm", attempt: 2, outcome: .retryScheduled,
                httpStatus: 503, atMs: 5, nextAttemptAtMs: 99, error: "destination answered 503"))
        ]
        let (journal, existing) = try Self.open(directory.path)
        #expect(existing.isEmpty)
        let results = Self.appendAll(journal, written)
        #expect(results.allSatisfy { if case .success = $0 { true } else { false } })
        if case .success(let location) = results[7] {
            #expect(try journal.read(at: location) == written[7])
        }
        journal.close()
        let (reopened, recovered) = try Self.open(directory.path)
        reopened.close()
        #expect(recovered == written)
    }

    /// A file whose name is a number no journal reaches is not a segment, so recovery leaves it alone instead of
    /// counting past the largest segment number.
    @Test func segmentNameBeyondLimitIsIgnored() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (journal, _) = try Self.open(directory.path)
        Self.appendAll(journal, [Self.event(1)])
        journal.close()
        let stray = directory.path + "/18446744073709551615.seg"
        try Data("XXXXXXXXjunk".utf8).write(to: URL(fileURLWithPath: stray))
        #expect(try SegmentFile.segments(in: directory.path) == [1])

        let (reopened, recovered) = try Self.open(directory.path)
        #expect(recovered == [Self.event(1)])
        let results = Self.appendAll(reopened, [Self.event(2)])
        reopened.close()
        #expect(results.allSatisfy { if case .success = $0 { true } else { false } })
        #expect(FileManager.default.fileExists(atPath: stray))
    }

    /// No segment follows the largest number, since a start would not read it back. A journal whose last file
    /// has that number fails to open instead of writing records that a later start would skip.
    @Test func noSegmentFollowsTheLargestNumber() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let last = directory.path + "/" + SegmentFile.name(for: SegmentFile.maxSegmentNumber)
        try Data("XXXXXXXXjunk".utf8).write(to: URL(fileURLWithPath: last))
        #expect(throws: JournalError.self) { _ = try Self.open(directory.path) }
    }

    /// A record longer than recovery reads is refused rather than written and then lost at the next start.
    @Test func oversizedRecordIsRefused() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (journal, _) = try Self.open(directory.path)
        let large = Self.event(1, body: String(repeating: "x", count: SegmentFile.maxPayloadBytes))
        let results = Self.appendAll(journal, [large, Self.event(2)])
        guard case .failure(let error) = results[0] else {
            Issue.record("a record over the frame limit was written")
            return
        }
        #expect(error.reason.contains("larger than the frame limit"))
        #expect((try? results[1].get()) != nil)
        journal.close()
        let (reopened, recovered) = try Self.open(directory.path)
        reopened.close()
        #expect(recovered == [Self.event(2)])
    }

    /// A refused record's completion runs on another thread, so a caller may append under a lock that its
    /// completion takes, as ingest does, even while the journal closes.
    @Test func refusedRecordCompletesOutsideCallersLock() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (journal, _) = try Self.open(directory.path)
        journal.close()
        let lock = Locked(0)
        let completed = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            lock.withLock { _ in
                journal.append(Self.event(1)) { result in
                    lock.withLock { $0 += 1 }
                    if case .failure = result { completed.signal() }
                }
            }
        }
        #expect(completed.wait(timeout: .now() + 10) == .success)
    }

    @Test func eventBodyMatchesFullDecode() {
        for record in [Self.event(3), Self.event(4, body: "{}")] {
            guard case .event(let event) = record else { continue }
            let body = record.encoded().withUnsafeBytes { JournalRecord.eventBody($0) }
            #expect(body?.body == event.body)
            #expect(body?.isBare == event.isBare)
        }
        let attempt = JournalRecord.attempt(AttemptRecord(
            eventSequence: 1, tenant: "t", destination: "d", attempt: 1, outcome: .delivered, httpStatus: 204, atMs: 0,
            nextAttemptAtMs: nil, error: ""))
        #expect(attempt.encoded().withUnsafeBytes { JournalRecord.eventBody($0) } == nil)
    }

    @Test func tornTailIsTruncated() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (journal, _) = try Self.open(directory.path)
        Self.appendAll(journal, (1...5).map { Self.event($0) })
        journal.close()
        let segment = directory.path + "/" + SegmentFile.name(for: 1)
        let intactSize = try FileManager.default.attributesOfItem(atPath: segment)[.size] as! Int
        // Half a frame, as a crash in the middle of a write leaves it.
        let handle = FileHandle(forWritingAtPath: segment)!
        handle.seekToEndOfFile()
        handle.write(Data([200, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9]))
        handle.closeFile()
        let (reopened, recovered) = try Self.open(directory.path)
        #expect(recovered.count == 5)
        // A clean stop cuts the preallocated space, so the file is back to the intact records alone.
        reopened.close()
        #expect(try FileManager.default.attributesOfItem(atPath: segment)[.size] as! Int == intactSize)
        // Appends after recovery follow the last intact record.
        let (appending, _) = try Self.open(directory.path)
        Self.appendAll(appending, [Self.event(6)])
        appending.close()
        let (_, again) = try Self.open(directory.path)
        #expect(again.count == 6)
    }

    /// A crash leaves the active segment with its preallocated zeros. They are free space, not a torn tail, so
    /// appends after the restart go into them.
    @Test func preallocatedZerosAreFreeSpace() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (journal, _) = try Self.open(directory.path, segmentBytes: 1 << 20)
        Self.appendAll(journal, (1...3).map { Self.event($0) })
        let segment = directory.path + "/" + SegmentFile.name(for: 1)
        // Copied while open, as a crash would leave it: the journal's bytes are on disk after each sync.
        let crashed = [UInt8](FileManager.default.contents(atPath: segment)!)
        journal.close()
        #expect(crashed.count == 1 << 20)
        let scan = SegmentFile.scan(crashed) { _, _ in }
        #expect(scan.records == 3)
        #expect(scan.problem == nil)
        #expect(scan.unusedBytes == crashed.count - scan.validBytes)
        #expect(FileManager.default.createFile(atPath: segment, contents: Data(crashed)))
        let (reopened, recovered) = try Self.open(directory.path, segmentBytes: 1 << 20)
        #expect(recovered.count == 3)
        #expect(try FileManager.default.attributesOfItem(atPath: segment)[.size] as! Int == 1 << 20)
        Self.appendAll(reopened, [Self.event(4)])
        reopened.close()
        let (_, again) = try Self.open(directory.path, segmentBytes: 1 << 20)
        #expect(again.count == 4)
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/quarantine"))
    }

    /// Appends past the first preallocated stretch get further stretches from the background, and every record
    /// survives a crash copy taken while zeros lie ahead of the last one.
    @Test func preallocationGrowsInStretches() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let segmentBytes = 3 * ActiveSegment.chunkBytes
        let (journal, _) = try Self.open(directory.path, segmentBytes: segmentBytes)
        let body = String(repeating: "b", count: 1000)
        let records = (1...6000).map { Self.event(UInt64($0), body: body) }
        for batch in stride(from: 0, to: records.count, by: 500) {
            Self.appendAll(journal, Array(records[batch..<min(batch + 500, records.count)]))
        }
        let segment = directory.path + "/" + SegmentFile.name(for: 1)
        let crashed = [UInt8](FileManager.default.contents(atPath: segment)!)
        journal.close()
        let scan = SegmentFile.scan(crashed) { _, _ in }
        #expect(scan.records == records.count)
        #expect(scan.problem == nil)
        #expect(scan.validBytes > ActiveSegment.chunkBytes)
        #expect(crashed.count <= segmentBytes)
        #expect(try FileManager.default.attributesOfItem(atPath: segment)[.size] as! Int == scan.validBytes)
        #expect(FileManager.default.createFile(atPath: segment, contents: Data(crashed)))
        let (reopened, recovered) = try Self.open(directory.path, segmentBytes: segmentBytes)
        reopened.close()
        #expect(recovered.count == records.count)
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/quarantine"))
    }

    /// A write cut short inside preallocated space leaves part of a frame followed by zeros; that is a torn
    /// tail, cut at start, not damage.
    @Test func tornWriteInPreallocatedSpaceIsTruncated() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (journal, _) = try Self.open(directory.path, segmentBytes: 1 << 20)
        Self.appendAll(journal, (1...3).map { Self.event($0) })
        journal.close()
        let segment = directory.path + "/" + SegmentFile.name(for: 1)
        var bytes = [UInt8](FileManager.default.contents(atPath: segment)!)
        let intactSize = bytes.count
        var torn: [UInt8] = []
        SegmentFile.frame(Self.event(4).encoded(), into: &torn)
        bytes += torn.prefix(torn.count / 2) + [UInt8](repeating: 0, count: 4096)
        #expect(FileManager.default.createFile(atPath: segment, contents: Data(bytes)))
        let (reopened, recovered) = try Self.open(directory.path, segmentBytes: 1 << 20)
        reopened.close()
        #expect(recovered.count == 3)
        #expect(try FileManager.default.attributesOfItem(atPath: segment)[.size] as! Int == intactSize)
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/quarantine"))
    }

    @Test func damageInEarlierSegmentSkipsOnlyItsRecord() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (journal, _) = try Self.open(directory.path, segmentBytes: 300)
        for sequence in 1...6 {
            Self.appendAll(journal, [Self.event(UInt64(sequence), body: String(repeating: "a", count: 100))])
        }
        journal.close()
        let segments = try SegmentFile.segments(in: directory.path)
        #expect(segments.count >= 3)
        let first = directory.path + "/" + SegmentFile.name(for: segments[0])
        var bytes = [UInt8](FileManager.default.contents(atPath: first)!)
        bytes[bytes.count - 5] ^= 0xFF
        #expect(FileManager.default.createFile(atPath: first, contents: Data(bytes)))
        let (reopened, recovered) = try Self.open(directory.path, segmentBytes: 300)
        reopened.close()
        // Only the damaged record is lost; the later segments stay and are read.
        #expect(recovered.count == 5)
        #expect(try SegmentFile.segments(in: directory.path) == segments)
        let quarantined = try FileManager.default.contentsOfDirectory(atPath: directory.path + "/quarantine")
        #expect(quarantined.count == 1)
        // A second start keeps the first copy instead of adding another.
        let (again, _) = try Self.open(directory.path, segmentBytes: 300)
        again.close()
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path + "/quarantine").count == 1)
    }

    @Test func damageBeforeTailIsNotTreatedAsTear() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (journal, _) = try Self.open(directory.path)
        Self.appendAll(journal, (1...10).map { Self.event($0) })
        journal.close()
        let segment = directory.path + "/" + SegmentFile.name(for: 1)
        var bytes = [UInt8](FileManager.default.contents(atPath: segment)!)
        let original = bytes
        bytes[bytes.count / 2] ^= 0xFF
        #expect(FileManager.default.createFile(atPath: segment, contents: Data(bytes)))
        let (reopened, recovered) = try Self.open(directory.path)
        // The records on both sides of the damage are read, and appends go on after the last one.
        #expect(recovered.count == 9)
        Self.appendAll(reopened, [Self.event(11)])
        reopened.close()
        let (_, again) = try Self.open(directory.path)
        #expect(again.count == 10)
        let quarantined = try FileManager.default.contentsOfDirectory(atPath: directory.path + "/quarantine")
        #expect(quarantined.count == 1)
        let copy = [UInt8](FileManager.default.contents(atPath: directory.path + "/quarantine/" + quarantined[0])!)
        #expect(copy.count == original.count)
    }

    @Test func preparedSegmentDoesNotTurnTearIntoDamage() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (journal, _) = try Self.open(directory.path, segmentBytes: 4000)
        // Past three quarters of the segment, the next one is created ahead of rotation. Appending stops there,
        // since on a slow disk more appends could fill the segment before the next one is ready.
        var written = 0
        while (try SegmentFile.segments(in: directory.path).count) < 2 && journal.metrics.bytesWritten.value < 3000 {
            written += 1
            Self.appendAll(journal, [Self.event(UInt64(written))])
        }
        #expect(waitUntil { (try? SegmentFile.segments(in: directory.path).count) == 2 })
        #expect(journal.activeSegment == 1)
        journal.close()
        let active = directory.path + "/" + SegmentFile.name(for: 1)
        let handle = FileHandle(forWritingAtPath: active)!
        handle.seekToEndOfFile()
        handle.write(Data([90, 0, 0, 0, 1, 2, 3, 4, 5]))
        handle.closeFile()
        let (reopened, recovered) = try Self.open(directory.path, segmentBytes: 4000)
        reopened.close()
        #expect(recovered.count == written)
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/quarantine"))
    }

    @Test func damagedHeaderKeepsRecordsAndNewWrites() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (journal, _) = try Self.open(directory.path)
        Self.appendAll(journal, (1...3).map { Self.event($0) })
        journal.close()
        let segment = directory.path + "/" + SegmentFile.name(for: 1)
        var bytes = [UInt8](FileManager.default.contents(atPath: segment)!)
        bytes.replaceSubrange(0..<8, with: Array("XXXXXXXX".utf8))
        #expect(FileManager.default.createFile(atPath: segment, contents: Data(bytes)))
        let (reopened, recovered) = try Self.open(directory.path)
        #expect(recovered.count == 3)
        // New records go to a fresh segment, not behind the damaged header.
        Self.appendAll(reopened, [Self.event(4)])
        reopened.close()
        let (_, again) = try Self.open(directory.path)
        #expect(again.count == 4)
        #expect(try SegmentFile.segments(in: directory.path).count == 2)
    }

    @Test func zeroFilledTailIsTorn() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (journal, _) = try Self.open(directory.path)
        Self.appendAll(journal, (1...3).map { Self.event($0) })
        journal.close()
        let segment = directory.path + "/" + SegmentFile.name(for: 1)
        let handle = FileHandle(forWritingAtPath: segment)!
        handle.seekToEndOfFile()
        handle.write(Data(count: 4096))
        handle.closeFile()
        let (reopened, recovered) = try Self.open(directory.path)
        reopened.close()
        #expect(recovered.count == 3)
        #expect(try JournalTests.verify(directory.path))
    }

    static func verify(_ path: String) throws -> Bool {
        var healthy = true
        for segment in try SegmentFile.segments(in: path) {
            let result = SegmentFile.scan(try SegmentFile.readAll(path + "/" + SegmentFile.name(for: segment))) { _, _ in }
            healthy = healthy && result.problem == nil
        }
        return healthy
    }

    @Test func recordsFoundAcrossRandomDamage() throws {
        // One MiB of random bytes between two valid records.
        var random = SystemRandomNumberGenerator()
        var bytes = SegmentFile.magic
        let record = Self.event(1).encoded()
        SegmentFile.frame(record, into: &bytes)
        bytes += (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &random) }
        SegmentFile.frame(record, into: &bytes)
        let result = SegmentFile.scan(bytes) { _, _ in }
        #expect(result.records == 2)
        #expect(result.damage.count == 1)
        #expect(result.tornTail == nil)
    }

    /// Keeps what the recovery lane is given. Touched only on the lane's thread until `Journal.open` returns.
    final class RecordingLane: RecoveryLane, @unchecked Sendable {
        var events: [(event: EventRecord, location: JournalLocation)] = []

        func visit(_ event: EventRecord, at location: JournalLocation) {
            self.events.append((event, location))
        }
    }

    /// Writes events 1 through `count` into 512-byte segments, one append at a time so that each segment contains
    /// a few, with an attempt record after every event whose sequence is a multiple of `attemptEvery`. Returns the
    /// segments.
    static func writeSmallSegments(_ directory: String, events count: Int, attemptEvery: Int = .max) throws -> [UInt64] {
        let (journal, _) = try Self.open(directory, segmentBytes: 512)
        for sequence in 1...count {
            Self.appendAll(journal, [Self.event(UInt64(sequence))])
            if sequence % attemptEvery == 0 {
                Self.appendAll(journal, [.attempt(AttemptRecord(
                    eventSequence: UInt64(sequence), tenant: "t1", destination: "crm", attempt: 1, outcome: .delivered,
                    httpStatus: 204, atMs: 0, nextAttemptAtMs: nil, error: ""))])
            }
        }
        journal.close()
        return try SegmentFile.segments(in: directory)
    }

    /// The lane gets every event the visitor gets, in the same order and at the same places, across many
    /// segments and past a damaged record, with the id and type left out. Attempt records go to the visitor
    /// alone.
    @Test func laneGetsEveryEventInOrder() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let segments = try Self.writeSmallSegments(directory.path, events: 60, attemptEvery: 7)
        #expect(segments.count > 10)
        let second = directory.path + "/" + SegmentFile.name(for: segments[1])
        var bytes = [UInt8](FileManager.default.contents(atPath: second)!)
        bytes[bytes.count - 5] ^= 0xFF
        #expect(FileManager.default.createFile(atPath: second, contents: Data(bytes)))

        let lane = RecordingLane()
        var visited: [(event: EventRecord, location: JournalLocation)] = []
        var attempts = 0
        let reopened = try Journal.open(
            directory: directory.path, segmentBytes: 512, logger: Logger(level: .error), includeBodies: false,
            lane: lane
        ) { record, location in
            switch record {
            case .event(let event): visited.append((event, location))
            case .attempt: attempts += 1
            case .replay: break
            }
        }
        reopened.close()
        // The damage costs one record, an event or an attempt.
        #expect(visited.count + attempts == 60 + 8 - 1)
        #expect(visited.count >= 59)
        #expect(lane.events.map(\.location) == visited.map(\.location))
        for (laneEvent, visitedEvent) in zip(lane.events.map(\.event), visited.map(\.event)) {
            #expect(laneEvent.eventID.isEmpty)
            #expect(laneEvent.type.isEmpty)
            var expected = visitedEvent
            expected.eventID = ""
            expected.type = ""
            #expect(laneEvent == expected)
        }
    }

    /// A segment that cannot be read fails the open with that segment's path. With a lane, the reader taken for
    /// the failed read must be given back, or freeing the lane's semaphore stops the process.
    @Test func unreadableSegmentFailsOpenWithLane() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let segments = try Self.writeSmallSegments(directory.path, events: 20)
        #expect(segments.count > 3)
        // A directory under a segment's name, which every user, root too, fails to read as a file.
        let blocked = directory.path + "/" + SegmentFile.name(for: segments[2])
        try FileManager.default.removeItem(atPath: blocked)
        try FileManager.default.createDirectory(atPath: blocked, withIntermediateDirectories: false)

        let lane = RecordingLane()
        #expect {
            _ = try Journal.open(
                directory: directory.path, segmentBytes: 512, logger: Logger(level: .error), lane: lane) { _, _ in }
        } throws: { error in
            (error as? JournalError)?.path == blocked
        }
    }

    /// Each option leaves its fields empty and decodes the rest as written.
    @Test func omittedTextIsLeftEmpty() {
        func event(destinations: [String]) -> EventRecord {
            EventRecord(
                sequence: 9, acceptedAtMs: 5, isStale: false, isBare: false, status: .issued,
                dedupeKey: DigestKey(high: 1, low: 2), lifecycleKey: DigestKey(high: 3, low: 4), tenant: "t1",
                eventID: "evt_9", type: "com.gigs.portOut.issued", portOutID: "pout_9", project: "acme-mobile",
                destinations: destinations, body: Array("{}".utf8), portOutCreatedAtMs: 7,
                subscription: "sub_0SNTORy8HZRd6PFFxSbd414RhJyC")
        }
        func decoded(_ event: EventRecord, omitting: OmittedEventText) -> EventRecord? {
            JournalRecord.event(event).encoded().withUnsafeBytes { payload in
                guard case .event(let decoded)? = JournalRecord.decode(payload, omitting: omitting) else { return nil }
                return decoded
            }
        }
        for destinations in [[], ["billing", "crm"]] {
            let original = event(destinations: destinations)
            #expect(decoded(original, omitting: []) == original)

            var withoutText = original
            withoutText.eventID = ""
            withoutText.type = ""
            #expect(decoded(original, omitting: .idAndType) == withoutText)

            var forRecovery = destinations.isEmpty ? withoutText : original
            forRecovery.subscription = ""
            #expect(decoded(original, omitting: [.undeliveredIDAndType, .subscription]) == forRecovery)
        }
    }

    @Test func rotationKeepsOrder() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (journal, _) = try Self.open(directory.path, segmentBytes: 512)
        let records = (1...40).map { Self.event($0) }
        for record in records {
            Self.appendAll(journal, [record])
        }
        journal.close()
        #expect(try SegmentFile.segments(in: directory.path).count > 1)
        let (_, recovered) = try Self.open(directory.path, segmentBytes: 512)
        #expect(recovered == records)
    }

    /// A tmpfs too small for the batch makes the write fail with ENOSPC; nothing is acknowledged and the
    /// journal accepts writes again once space is freed. Needs root to mount.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func fullDiskFailsWithoutAcknowledging() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let mount = directory.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        #expect(runProgram("/bin/mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mount]) == 0)
        defer { _ = runProgram("/bin/umount", [mount]) }
        let filler = mount + "/filler"
        #expect(FileManager.default.createFile(atPath: filler, contents: Data(count: 48 * 1024)))
        let (journal, _) = try Self.open(mount + "/journal")
        defer { journal.close() }
        let big = String(repeating: "b", count: 30 * 1024)
        let failed = Self.appendAll(journal, [Self.event(1, body: big)])
        guard case .failure(let error) = failed[0] else {
            Issue.record("write succeeded on a full disk")
            return
        }
        #expect(error.errno == ENOSPC)
        try FileManager.default.removeItem(atPath: filler)
        let retried = Self.appendAll(journal, [Self.event(1, body: big)])
        guard case .success(let location) = retried[0] else {
            Issue.record("write failed after space was freed: \(retried[0])")
            return
        }
        #expect(try journal.read(at: location) == Self.event(1, body: big))
    }

}
