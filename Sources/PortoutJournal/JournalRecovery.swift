import Foundation
import PortoutCore

#if canImport(Glibc)
import Glibc
#endif

/// Start-up recovery: reads every segment in order and cuts the journal at the first frame that is torn or
/// corrupt.
///
/// A bad frame at the end of the last segment is the normal trace of a crash during a write, and nothing after
/// it was acknowledged, so it is truncated with a warning. A bad frame anywhere earlier is damage: the segment
/// is truncated there and every later segment is moved to `quarantine/` with an error, so an operator can look
/// at it and no later record is read out of order.
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
        var totalRecords = 0
        for (index, segment) in segments.enumerated() {
            let path = self.directory + "/" + SegmentFile.name(for: segment)
            let bytes = try SegmentFile.readAll(path)
            var undecodable = 0
            let result = SegmentFile.scan(bytes) { payload, offset in
                guard let record = JournalRecord.decode(payload, includeBody: self.includeBodies) else {
                    undecodable += 1
                    return
                }
                visit(record, JournalLocation(segment: segment, offset: Int64(offset), length: Int32(payload.count)))
            }
            totalRecords += result.records
            if undecodable > 0 {
                self.logger.error(
                    "journal records skipped",
                    ["segment": .string(path), "records": .number(Double(undecodable)),
                     "reason": "checksum matched but the record format is unknown"])
            }
            guard let problem = result.problem else { continue }
            let isLast = index == segments.count - 1
            let dropped = bytes.count - result.validBytes
            if isLast && result.isTornTail {
                try self.truncate(path: path, to: result.validBytes, dropping: dropped)
                self.logger.warning(
                    "journal tail truncated",
                    [
                        "segment": .string(path), "reason": .string(problem),
                        "validBytes": .number(Double(result.validBytes)), "droppedBytes": .number(Double(dropped)),
                    ])
            } else {
                // Damage, not a torn write: records after it were acknowledged, so the whole segment is kept in
                // quarantine before the active copy is cut, along with every later segment.
                let later = Array(segments[(index + 1)...])
                try self.quarantine(copyOf: segment)
                try self.truncate(path: path, to: result.validBytes, dropping: dropped)
                try self.quarantine(later)
                self.logger.error(
                    "journal segment damaged",
                    [
                        "segment": .string(path), "reason": .string(problem),
                        "validBytes": .number(Double(result.validBytes)), "droppedBytes": .number(Double(dropped)),
                        "quarantinedSegments": .number(Double(later.count + 1)),
                        "quarantine": .string(self.directory + "/quarantine"),
                    ])
            }
            self.logger.info("journal recovered", ["records": .number(Double(totalRecords))])
            // A segment cut below its header is rewritten from scratch by the writer.
            return (segment, result.validBytes < SegmentFile.magic.count ? 0 : result.validBytes)
        }
        self.logger.info("journal recovered", ["records": .number(Double(totalRecords)), "segments": .number(Double(segments.count))])
        let last = segments[segments.count - 1]
        let size = try self.fileSize(self.directory + "/" + SegmentFile.name(for: last))
        return (last, size)
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

    /// Copies a segment into `quarantine/` as it is, before recovery cuts it.
    private func quarantine(copyOf segment: UInt64) throws(JournalError) {
        let quarantine = self.directory + "/quarantine"
        let name = SegmentFile.name(for: segment)
        do {
            try FileManager.default.createDirectory(atPath: quarantine, withIntermediateDirectories: true)
            let target = quarantine + "/" + name + ".damaged." + String(Int(Date().timeIntervalSince1970))
            try FileManager.default.copyItem(atPath: self.directory + "/" + name, toPath: target)
        } catch {
            throw JournalError(path: quarantine, reason: "cannot copy the damaged segment aside: \(error)")
        }
    }

    private func quarantine(_ segments: [UInt64]) throws(JournalError) {
        let quarantine = self.directory + "/quarantine"
        do {
            try FileManager.default.createDirectory(atPath: quarantine, withIntermediateDirectories: true)
            for segment in segments {
                let name = SegmentFile.name(for: segment)
                let target = quarantine + "/" + name + "." + String(Int(Date().timeIntervalSince1970))
                try FileManager.default.moveItem(atPath: self.directory + "/" + name, toPath: target)
            }
        } catch {
            throw JournalError(path: quarantine, reason: "cannot move damaged segments aside: \(error)")
        }
        try SegmentFile.syncDirectory(self.directory)
    }

    private func fileSize(_ path: String) throws(JournalError) -> Int {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw JournalError(path: path, reason: "cannot stat the segment", errno: Glibc.errno)
        }
        return Int(info.st_size)
    }
}
