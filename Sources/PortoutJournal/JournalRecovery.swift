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

    init(directory: String, logger: Logger, includeBodies: Bool) throws(JournalError) {
        self.directory = directory
        self.logger = logger
        self.includeBodies = includeBodies
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
        let reader = SegmentReader()
        // The last segment's bytes are scanned after the reader's last call.
        defer { withExtendedLifetime(reader) {} }
        for (index, segment) in segments.enumerated() {
            let path = self.directory + "/" + SegmentFile.name(for: segment)
            let bytes = try reader.read(path)
            var undecodable = 0
            let result = SegmentFile.scan(bytes) { payload, offset in
                guard let record = JournalRecord.decode(payload, includeBody: self.includeBodies) else {
                    undecodable += 1
                    return
                }
                visit(record, JournalLocation(segment: segment, offset: Int64(offset), length: Int32(payload.count)))
            }
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
