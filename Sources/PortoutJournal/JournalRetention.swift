import PortoutCore

#if canImport(Glibc)
import Glibc
#endif

/// The choice of segments retention may remove: the oldest ones, as long as each is older than the retention period
/// and contains no event whose delivery is still unsettled.
///
/// Only a prefix of the journal is ever removed, oldest first. An unsettled delivery's later records (its
/// attempts, or the replay record that queued it again) come after its event, so keeping the event's segment
/// keeps them too. The segment the writer appends to is never removed, nor any after it.
public enum JournalRetention {
    public struct SegmentInfo: Sendable, Equatable {
        public var segment: UInt64
        /// The file's size, preallocated space included.
        public var bytes: Int
        /// When the segment was last written, in Unix milliseconds.
        public var modifiedAtMs: Int64
        /// False for a segment with only its header, or a header and preallocated zeros.
        public var containsRecords: Bool

        public init(segment: UInt64, bytes: Int, modifiedAtMs: Int64, containsRecords: Bool = true) {
            self.segment = segment
            self.bytes = bytes
            self.modifiedAtMs = modifiedAtMs
            self.containsRecords = containsRecords
        }
    }

    public struct Plan: Sendable, Equatable {
        public var removable: [SegmentInfo] = []
        /// The oldest segment kept only because it contains an event whose delivery is unsettled, if any.
        public var keptForUnsettled: UInt64?

        public var removableBytes: Int {
            self.removable.reduce(0) { $0 + $1.bytes }
        }
    }

    /// Lists the segments in `directory` with their sizes and modification times, oldest first.
    public static func segments(in directory: String) throws(JournalError) -> [SegmentInfo] {
        try SegmentFile.segments(in: directory).compactMap { segment in
            var status = stat()
            let path = directory + "/" + SegmentFile.name(for: segment)
            guard stat(path, &status) == 0 else { return nil }
            let modifiedAtMs = Int64(status.st_mtim.tv_sec) * 1000 + Int64(status.st_mtim.tv_nsec) / 1_000_000
            return SegmentInfo(
                segment: segment, bytes: Int(status.st_size), modifiedAtMs: modifiedAtMs,
                containsRecords: !SegmentFile.containsNoRecords(path))
        }
    }

    /// Plans a pass: `oldestUnsettledSegment` is the oldest segment holding the event of an unsettled delivery,
    /// and `activeSegment` the one the writer appends to. Without it, as for a journal read offline, the newest
    /// segment is taken as the active one, or the one before it when the newest is an empty segment prepared
    /// ahead of rotation.
    public static func plan(
        _ segments: [SegmentInfo], nowMs: Int64, retentionSeconds: Int, oldestUnsettledSegment: UInt64?,
        activeSegment: UInt64? = nil
    ) -> Plan {
        var plan = Plan()
        let cutoff = nowMs - Int64(retentionSeconds) * 1000
        var active = activeSegment ?? segments.last?.segment ?? 0
        if activeSegment == nil, segments.count >= 2, let last = segments.last, !last.containsRecords {
            active = segments[segments.count - 2].segment
        }
        for info in segments {
            guard info.segment < active, info.modifiedAtMs < cutoff else { break }
            if let pinned = oldestUnsettledSegment, info.segment >= pinned {
                plan.keptForUnsettled = info.segment
                break
            }
            plan.removable.append(info)
        }
        return plan
    }
}

extension Journal {
    /// Removes segments that a plan found removable, oldest first, and syncs the directory. Returns the segments
    /// removed, which stop at the first that could not be.
    ///
    /// A read descriptor of a removed segment is closed by the last read using it. Callers stop reading a
    /// segment before removing it.
    public func remove(_ plan: JournalRetention.Plan) -> [UInt64] {
        var removed: [UInt64] = []
        for info in plan.removable {
            let path = self.directory + "/" + SegmentFile.name(for: info.segment)
            guard unlink(path) == 0 || errno == ENOENT else {
                self.logger.error(
                    "journal segment not removed",
                    ["path": .string(path), "error": .string(SystemError(operation: "unlink", errno: errno).description)])
                break
            }
            removed.append(info.segment)
        }
        guard !removed.isEmpty else { return [] }
        do {
            try SegmentFile.syncDirectory(self.directory)
        } catch {
            self.logger.warning("journal directory not synced after retention", ["error": .string(error.description)])
        }
        self.retireReaders(removed)
        return removed
    }
}
