import Foundation
import PortoutCore

#if canImport(Glibc)
import Glibc
#endif

/// Start-up recovery: reads every segment in order and visits each valid record.
///
/// A torn frame at the end of the last segment is the normal trace of a crash during a write, and nothing after
/// it was acknowledged, so it is truncated with a warning. Bad bytes anywhere else are damage: they are skipped,
/// the records after them are still read, an error is logged at every start, and a copy of the segment as
/// found is kept in `quarantine/`.
struct JournalRecovery {
    let directory: String
    let logger: Logger
    let includeBodies: Bool
    let omitting: OmittedEventText
    let lane: (any RecoveryLane)?

    init(
        directory: String, logger: Logger, includeBodies: Bool, omitting: OmittedEventText = [],
        lane: (any RecoveryLane)? = nil
    ) throws(JournalError) {
        self.directory = directory
        self.logger = logger
        self.includeBodies = includeBodies
        self.omitting = omitting
        self.lane = lane
    }

    /// Visits every valid record and returns the segment to append to with its valid size (0 for a new one).
    func run(visit: (JournalRecord, JournalLocation) -> Void) throws(JournalError) -> (segment: UInt64, size: Int) {
        let segments = try SegmentFile.segments(in: self.directory)
        guard !segments.isEmpty else { return (1, 0) }
        for gap in SegmentFile.gaps(in: segments) {
            self.logger.error(
                "journal segments missing",
                ["before": .string(SegmentFile.name(for: gap.before)), "problem": .string(gap.missing),
                 "effect": "events and delivery outcomes in them are lost; run journal verify"])
        }
        var totalRecords = 0
        var lastValidBytes = 0
        let runner = self.lane.map(LaneRunner.init)
        // With a lane, two readers, so that the lane decodes one segment while the next is read into the other.
        let readers = runner == nil ? [SegmentReader()] : [SegmentReader(), SegmentReader()]
        // The lane reads the readers' bytes until `finish` returns, and the last segment's bytes are scanned
        // after the last `read`.
        defer {
            runner?.finish()
            withExtendedLifetime(readers) {}
        }
        for (index, segment) in segments.enumerated() {
            let path = self.directory + "/" + SegmentFile.name(for: segment)
            runner?.waitForFreeReader()
            let bytes: UnsafeRawBufferPointer
            do {
                bytes = try readers[index % readers.count].read(path)
            } catch {
                // The lane never gets this reader, so it is given back here. libdispatch stops the process when
                // a semaphore is freed with a count below its initial one.
                runner?.returnUnusedReader()
                throw error
            }
            var undecodable = 0
            var laneEvents: [LaneRunner.Span] = []
            let result = SegmentFile.scan(bytes) { payload, offset in
                guard let record = JournalRecord.decode(
                    payload, includeBody: self.includeBodies, omitting: self.omitting)
                else {
                    undecodable += 1
                    return
                }
                let location = JournalLocation(segment: segment, offset: Int64(offset), length: Int32(payload.count))
                if runner != nil, case .event = record {
                    laneEvents.append(LaneRunner.Span(location: location, start: payload.baseAddress! - bytes.baseAddress!))
                }
                visit(record, location)
            }
            runner?.submit(laneEvents, in: bytes)
            totalRecords += result.records
            lastValidBytes = result.validBytes
            if undecodable > 0 {
                self.logger.error(
                    "journal records skipped",
                    ["segment": .string(path), "records": .number(Double(undecodable)),
                     "reason": "checksum matched but the record format is unknown"])
            }
            if !result.damage.isEmpty {
                // Records after the damage were read, so nothing is cut; a copy of the segment as found is kept
                // for the operator, once.
                let copied = try self.quarantine(copyOf: segment)
                for damage in result.damage {
                    self.logger.error(
                        "journal segment damaged",
                        [
                            "segment": .string(path), "reason": .string(damage.reason),
                            "start": .number(Double(damage.start)), "skippedBytes": .number(Double(damage.end - damage.start)),
                            "copy": .string(copied),
                        ])
                }
            }
            guard let tornTail = result.tornTail else { continue }
            let dropped = bytes.count - result.validBytes
            if index == segments.count - 1 {
                try self.truncate(path: path, to: result.validBytes, dropping: dropped)
                self.logger.warning(
                    "journal tail truncated",
                    [
                        "segment": .string(path), "reason": .string(tornTail),
                        "validBytes": .number(Double(result.validBytes)), "droppedBytes": .number(Double(dropped)),
                    ])
                self.logger.info("journal recovered", ["records": .number(Double(totalRecords))])
                // A segment cut below its header is rewritten from scratch by the writer, and one whose header is
                // damaged is left alone for a new one.
                if bytes.count >= SegmentFile.magic.count && !bytes.prefix(SegmentFile.magic.count).elementsEqual(SegmentFile.magic) {
                    return (try SegmentFile.next(after: segment, directory: self.directory), 0)
                }
                return (segment, result.validBytes < SegmentFile.magic.count ? 0 : result.validBytes)
            }
            // A segment followed only by empty ones, prepared ahead of rotation, was the active one when the
            // writer stopped, so its torn end is cut like the last segment's.
            let laterAreEmpty = segments[(index + 1)...].allSatisfy { later in
                SegmentFile.containsNoRecords(self.directory + "/" + SegmentFile.name(for: later))
            }
            if laterAreEmpty {
                try self.truncate(path: path, to: result.validBytes, dropping: dropped)
                self.logger.warning(
                    "journal tail truncated",
                    [
                        "segment": .string(path), "reason": .string(tornTail),
                        "validBytes": .number(Double(result.validBytes)), "droppedBytes": .number(Double(dropped)),
                    ])
                continue
            }
            // Only the active segment can end in a torn write. An earlier one was synced whole before the next
            // began, so bad bytes at its end are damage and are left in place.
            let copied = try self.quarantine(copyOf: segment)
            self.logger.error(
                "journal segment damaged",
                [
                    "segment": .string(path), "reason": .string(tornTail),
                    "start": .number(Double(result.validBytes)), "skippedBytes": .number(Double(dropped)),
                    "copy": .string(copied),
                ])
        }
        self.logger.info("journal recovered", ["records": .number(Double(totalRecords)), "segments": .number(Double(segments.count))])
        let last = segments[segments.count - 1]
        let path = self.directory + "/" + SegmentFile.name(for: last)
        let size = try self.fileSize(path)
        if size >= SegmentFile.magic.count, !(try self.hasValidHeader(path)) {
            // Records appended behind a bad header would be skipped with it at the next start.
            return (try SegmentFile.next(after: last, directory: self.directory), 0)
        }
        // Appends go after the last record, into the zeros preallocated past it, if any.
        return (last, lastValidBytes)
    }

    /// Runs a lane on a serial queue at most one segment behind the reader. A reader's bytes are handed to the
    /// lane as they are, and the reader is read into again only after the lane is done with them.
    private final class LaneRunner: Sendable {
        /// An event's place in its segment and where its payload starts in the segment's bytes.
        struct Span {
            var location: JournalLocation
            var start: Int
        }

        /// Bytes the reader keeps unchanged until the lane signals `freeReaders`.
        private struct Segment: @unchecked Sendable {
            var bytes: UnsafeRawBufferPointer
        }

        private let lane: any RecoveryLane
        private let queue = DispatchQueue(label: "journal-recovery-lane")
        /// Counts the readers whose bytes the lane no longer needs.
        private let freeReaders = DispatchSemaphore(value: 2)

        init(lane: any RecoveryLane) {
            self.lane = lane
        }

        func waitForFreeReader() {
            self.freeReaders.wait()
        }

        /// Gives back a reader taken with `waitForFreeReader` whose bytes are never submitted.
        func returnUnusedReader() {
            self.freeReaders.signal()
        }

        func submit(_ events: [Span], in bytes: UnsafeRawBufferPointer) {
            let segment = Segment(bytes: bytes)
            self.queue.async { [lane, freeReaders] in
                for event in events {
                    let payload = UnsafeRawBufferPointer(
                        rebasing: segment.bytes[event.start..<(event.start + Int(event.location.length))])
                    if case .event(let record)? = JournalRecord.decode(payload, includeBody: false, omitting: .idAndType) {
                        lane.visit(record, at: event.location)
                    }
                }
                freeReaders.signal()
            }
        }

        /// Returns once the lane has visited every event submitted.
        func finish() {
            self.queue.sync {}
        }
    }

    private func truncate(path: String, to size: Int, dropping: Int) throws(JournalError) {
        guard dropping > 0 else { return }
        do {
            _ = try systemCall("truncate") { Glibc.truncate(path, off_t(size)) }
            let fd = try systemCall("open") { Glibc.open(path, O_WRONLY | O_CLOEXEC) }
            defer { Glibc.close(fd) }
            _ = try systemCall("fsync") { fsync(fd) }
        } catch {
            throw JournalError(path: path, error)
        }
    }

    /// Copies a damaged segment into `quarantine/` as found, unless an earlier start already did; returns the
    /// copy's path.
    private func quarantine(copyOf segment: UInt64) throws(JournalError) -> String {
        let quarantine = self.directory + "/quarantine"
        let name = SegmentFile.name(for: segment)
        do {
            try FileManager.default.createDirectory(
                atPath: quarantine, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let existing = try FileManager.default.contentsOfDirectory(atPath: quarantine)
            if let copy = existing.first(where: { $0.hasPrefix(name + ".damaged.") }) {
                return quarantine + "/" + copy
            }
            let target = quarantine + "/" + name + ".damaged." + String(Int(Date().timeIntervalSince1970))
            try FileManager.default.copyItem(atPath: self.directory + "/" + name, toPath: target)
            return target
        } catch {
            throw JournalError(path: quarantine, reason: "cannot copy the damaged segment aside: \(error)")
        }
    }

    private func hasValidHeader(_ path: String) throws(JournalError) -> Bool {
        do {
            let fd = try systemCall("open") { Glibc.open(path, O_RDONLY | O_CLOEXEC) }
            defer { Glibc.close(fd) }
            var header = [UInt8](repeating: 0, count: SegmentFile.magic.count)
            let count = try systemCall("pread") { header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) } }
            return count == header.count && header == SegmentFile.magic
        } catch {
            throw JournalError(path: path, error)
        }
    }

    private func fileSize(_ path: String) throws(JournalError) -> Int {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw JournalError(path: path, reason: "cannot stat the segment", errno: Glibc.errno)
        }
        return Int(info.st_size)
    }
}

/// State rebuilt from the journal's events on a second thread while recovery goes on, for state that needs
/// nothing from what the main visitor builds. Start-up on a large journal is bound by one core, and the lane
/// takes part of that work to the other.
///
/// The lane decodes each event again from the segment's bytes rather than receiving the main visitor's
/// record, so that no record's strings are retained and released on both cores. An earlier try that rebuilt
/// state from records made on the other thread doubled the CPU time of a start and saved none of its time.
public protocol RecoveryLane: AnyObject, Sendable {
    /// Called on the lane's thread for each event in journal order, with an empty body, id and type.
    func visit(_ event: EventRecord, at location: JournalLocation)
}
