import Foundation
import PortoutCore

#if canImport(Glibc)
import Glibc
#endif

/// A record frame's location: its segment, the frame's byte offset and the payload's length.
public struct JournalLocation: Sendable, Hashable, CustomStringConvertible {
    public var segment: UInt64
    public var offset: Int64
    public var length: Int32

    public init(segment: UInt64, offset: Int64, length: Int32) {
        self.segment = segment
        self.offset = offset
        self.length = length
    }

    public var description: String {
        "\(SegmentFile.name(for: self.segment))@\(self.offset)"
    }
}

/// A failed journal operation on one file, with the system error.
public struct JournalError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let reason: String
    /// The errno behind the failure, or 0 for a format problem.
    public let errno: Int32

    public init(path: String, reason: String, errno: Int32 = 0) {
        self.path = path
        self.reason = reason
        self.errno = errno
    }

    init(path: String, _ error: SystemError) {
        self.init(path: path, reason: error.description, errno: error.errno)
    }

    public var description: String {
        "\(self.path): \(self.reason)"
    }

    /// Whether the failure is transient: a shortage of file descriptors or memory, or an interrupted call, so
    /// that the same read may succeed later. A missing, damaged or unreadable record fails again each time.
    public var isTransient: Bool {
        Self.transientErrnos.contains(self.errno)
    }

    private static let transientErrnos: Set<Int32> = [EMFILE, ENFILE, ENOMEM, EAGAIN, EINTR]
}

/// Segment naming, framing and the file-level calls shared by the writer, recovery and the offline commands.
///
/// A segment starts with an 8-byte magic and version, then contains frames: a 32-bit little-endian payload length,
/// the payload's CRC-32C, and the payload.
public enum SegmentFile {
    static let magic: [UInt8] = Array("PORTJNL1".utf8)
    static let frameHeaderBytes = 8
    /// Frames longer than this are treated as corrupt. The journal refuses longer records, and `limits.maxBodyBytes`
    /// keeps an event's record well under it.
    static let maxPayloadBytes = 16 * 1024 * 1024

    public static func name(for segment: UInt64) -> String {
        let digits = String(segment)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".seg"
    }

    /// The highest segment number the journal takes from a file name. A journal that started a segment every
    /// second would need about nine million years to get there, so a file with a higher number was not written by
    /// it, and counting from such a number could overflow.
    public static let maxSegmentNumber: UInt64 = 1 << 48

    /// Returns the number of the segment after `segment`. The journal never writes a segment above
    /// `maxSegmentNumber`, since a start would not read it back.
    static func next(after segment: UInt64, directory: String) throws(JournalError) -> UInt64 {
        guard segment < self.maxSegmentNumber else {
            throw JournalError(
                path: directory + "/" + self.name(for: segment),
                reason: "no segment may follow this one, whose number is the largest the journal uses (\(self.maxSegmentNumber)); "
                    + "a file of this name was not written by the journal, so move it out of the directory")
        }
        return segment + 1
    }

    /// The segment numbers in `directory`, in ascending order. A name above `maxSegmentNumber` is not a segment.
    public static func segments(in directory: String) throws(JournalError) -> [UInt64] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw JournalError(path: directory, reason: "cannot list the journal directory: \(error)")
        }
        return names.compactMap { name -> UInt64? in
            // Twenty digits exactly: UInt64 would also read "+000…5", a second name for segment 5.
            guard name.hasSuffix(".seg"), name.utf8.count == 24,
                name.utf8.prefix(20).allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
            else { return nil }
            return UInt64(name.prefix(20)).flatMap { $0 <= self.maxSegmentNumber ? $0 : nil }
        }.sorted()
    }

    /// A run of segment numbers missing between two segments.
    public struct Gap: Sendable {
        /// The segment after the missing numbers.
        public var before: UInt64
        public var count: UInt64
        /// The missing numbers in words, such as "segments 3 to 5 are missing".
        public var missing: String
    }

    /// Returns each run of numbers missing between consecutive segments of the ascending `segments`. Retention
    /// removes only the oldest segments, so a gap means segments were lost or removed by hand.
    public static func gaps(in segments: [UInt64]) -> [Gap] {
        zip(segments, segments.dropFirst()).compactMap { previous, next in
            guard next > previous + 1 else { return nil }
            let missing = next == previous + 2
                ? "segment \(previous + 1) is missing"
                : "segments \(previous + 1) to \(next - 1) are missing"
            return Gap(before: next, count: next - previous - 1, missing: missing)
        }
    }

    static func frame(_ payload: [UInt8], into output: inout [UInt8]) {
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { output.append(contentsOf: $0) }
        withUnsafeBytes(of: CRC32C.checksum(payload).littleEndian) { output.append(contentsOf: $0) }
        output.append(contentsOf: payload)
    }

    /// Reads a whole file into memory.
    public static func readAll(_ path: String) throws(JournalError) -> [UInt8] {
        let reader = SegmentReader()
        defer { withExtendedLifetime(reader) {} }
        return Array(try reader.read(path))
    }

    /// The outcome of checking a segment's frames: where the valid prefix ends and, if it ends early, why.
    /// Bytes that belong to no valid frame, with why the first of them was rejected.
    public struct Damage: Sendable, Equatable {
        public var start: Int
        public var end: Int
        public var reason: String
    }

    public struct ScanResult: Sendable {
        /// The offset just past the last valid frame.
        public var validBytes: Int
        public var records: Int
        /// Bad regions that valid frames follow, or that run to the end without being a torn tail.
        public var damage: [Damage] = []
        /// Set when the bytes after the last valid frame are only a last frame that was not completely
        /// written, the trace of a crash during a write, with why it was rejected.
        public var tornTail: String?
        /// Zero bytes after the last valid frame: space the writer preallocated and has not used yet.
        public var unusedBytes = 0

        /// The first problem, for reports; nil when every byte belongs to a valid frame.
        public var problem: String? {
            self.damage.first.map { "\($0.reason) at offset \($0.start)" } ?? self.tornTail
        }
    }

    /// Checks the magic and every frame of a segment's bytes, calling `visit` with each valid payload and its
    /// frame offset.
    ///
    /// A frame that fails its checksum or is cut short at the end of the bytes is a torn tail when it is the last
    /// thing in the segment. Anything else is damage: the scan then looks for the next offset where a whole
    /// frame with a matching checksum starts and goes on from there, so records written after the damage are
    /// still found. A 32-bit checksum over a plausible length makes a false match there vanishingly unlikely.
    public static func scan(_ bytes: [UInt8], visit: (_ payload: UnsafeRawBufferPointer, _ offset: Int) -> Void)
        -> ScanResult
    {
        bytes.withUnsafeBytes { self.scan($0, visit: visit) }
    }

    static func scan(
        _ bytes: UnsafeRawBufferPointer, visit: (_ payload: UnsafeRawBufferPointer, _ offset: Int) -> Void
    ) -> ScanResult {
        guard bytes.count >= self.magic.count else {
            return ScanResult(validBytes: 0, records: 0, tornTail: "segment header is cut short")
        }
        var result = ScanResult(validBytes: self.magic.count, records: 0)
        var offset = self.magic.count
        if !bytes.prefix(self.magic.count).elementsEqual(self.magic) {
            // A damaged header hides no records: the frames after it are read as after any other damage.
            let next = self.nextValidFrame(bytes, after: offset - 1)
            result.damage.append(Damage(start: 0, end: next, reason: "segment header is not a portout-relay journal"))
            offset = next
        }
        while offset < bytes.count {
            switch self.checkFrame(bytes, at: offset) {
            case .valid(let payload):
                visit(payload, offset)
                result.records += 1
                offset += self.frameHeaderBytes + payload.count
                result.validBytes = offset
            case .tornTail(let fault), .bad(let fault):
                if self.isZero(UnsafeRawBufferPointer(rebasing: bytes[offset...])) {
                    // Zeros to the end are space preallocated for appends, or what a file system can leave of a
                    // write that a crash interrupted. Neither contains a record.
                    result.unusedBytes = bytes.count - offset
                    return result
                }
                let next = self.nextValidFrame(bytes, after: offset)
                if next == bytes.count, self.isInterruptedWrite(bytes, at: offset) {
                    // Nothing valid follows, so this is the end of an interrupted write.
                    result.tornTail = fault.reason
                    return result
                }
                // A damaged length field can look like a frame cut short; valid frames after it show damage.
                result.damage.append(Damage(start: offset, end: next, reason: fault.reason))
                offset = next
            }
        }
        return result
    }

    /// Returns whether the failed frame at `offset` is a write that a crash cut short: it runs past the end of the
    /// bytes, or only zeros (preallocated space the write did not reach) follow the end its length claims.
    private static func isInterruptedWrite(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Bool {
        if case .tornTail = self.checkFrame(bytes, at: offset) {
            return true
        }
        var claimedEnd = offset + self.frameHeaderBytes
        if bytes.count - offset >= self.frameHeaderBytes {
            let length = Int(self.readUInt32(bytes, at: offset))
            if length <= self.maxPayloadBytes {
                claimedEnd += length
            }
        }
        return claimedEnd >= bytes.count || self.isZero(UnsafeRawBufferPointer(rebasing: bytes[claimedEnd...]))
    }

    /// Returns whether every byte is zero, checked eight bytes at a time because a preallocated segment's unused tail
    /// can be tens of MiB.
    static func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var index = 0
        while index + 8 <= bytes.count {
            if bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self) != 0 { return false }
            index += 8
        }
        while index < bytes.count {
            if bytes[index] != 0 { return false }
            index += 1
        }
        return true
    }

    /// Returns whether the segment file contains no record: it is at most a header, or zeros follow the header.
    public static func containsNoRecords(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { _ = close(fd) }
        var header = [UInt8](repeating: 0, count: self.magic.count + self.frameHeaderBytes)
        let count = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count > self.magic.count else { return count >= 0 }
        return header[self.magic.count..<count].allSatisfy { $0 == 0 }
    }

    // NOTE: Each offset that reads as a plausible length and a known record kind costs a checksum over up to
    // 16 MiB. `journal verify` takes about 11 s for a 64 MiB segment of random bytes (release build, 2 vCPUs).
    // Bytes that look like such a header at most offsets cost time that grows with the square of their length:
    // 1 MiB of the repeated bytes 01 01 01 00 takes 8.6 s.
    private static func nextValidFrame(_ bytes: UnsafeRawBufferPointer, after offset: Int) -> Int {
        var next = offset + 1
        while next < bytes.count {
            if case .valid = self.checkFrame(bytes, at: next) { return next }
            next += 1
        }
        return bytes.count
    }

    private enum FrameCheck {
        case valid(UnsafeRawBufferPointer)
        case tornTail(FrameFault)
        case bad(FrameFault)
    }

    /// The fault that keeps the bytes at an offset from being a valid frame. The scan across damage checks every
    /// offset, so the text is built only for the faults that end up in a result.
    private enum FrameFault {
        case headerCutShort
        case implausibleLength(Int)
        case payloadCutShort
        case unknownKind
        case checksumMismatch

        var reason: String {
            switch self {
            case .headerCutShort: return "frame header is cut short"
            case .implausibleLength(let length): return "frame length \(length) is implausible"
            case .payloadCutShort: return "frame payload is cut short"
            case .unknownKind: return "frame holds no known record kind"
            case .checksumMismatch: return "frame checksum does not match"
            }
        }
    }

    private static func checkFrame(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> FrameCheck {
        guard bytes.count - offset >= self.frameHeaderBytes else { return .tornTail(.headerCutShort) }
        let length = Int(self.readUInt32(bytes, at: offset))
        // The relay never writes an empty record, and a run of zero bytes would otherwise read as empty frames.
        guard length > 0 && length <= self.maxPayloadBytes else { return .bad(.implausibleLength(length)) }
        let start = offset + self.frameHeaderBytes
        guard bytes.count - start >= length else { return .tornTail(.payloadCutShort) }
        // Every record starts with its kind. Checking it first keeps a scan across damaged bytes from computing a
        // checksum at most offsets.
        guard JournalRecord.isKnownKind(bytes[start]) else { return .bad(.unknownKind) }
        let payload = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + length)])
        guard CRC32C.checksum(payload) == self.readUInt32(bytes, at: offset + 4) else {
            // A last frame whose pages were only partly written also fails its checksum.
            return start + length == bytes.count ? .tornTail(.checksumMismatch) : .bad(.checksumMismatch)
        }
        return .valid(payload)
    }

    static func readUInt32(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt32 {
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    static func readUInt32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        bytes.withUnsafeBytes { self.readUInt32($0, at: offset) }
    }

    static func syncDirectory(_ directory: String) throws(JournalError) {
        do {
            let fd = try systemCall("open") { open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
            defer { _ = close(fd) }
            _ = try systemCall("fsync") { fsync(fd) }
        } catch {
            throw JournalError(path: directory, error)
        }
    }
}

/// A reader of whole segments, one after another, into one buffer that grows to fit the largest and is never
/// zeroed.
///
/// Recovery reads every segment this way because a new 64 MiB array for each made the kernel fault in and zero
/// 16,384 pages per segment. On a 1,000,000-record journal that was 160,000 page faults and about a seventh of
/// start-up's CPU time. Not thread-safe.
final class SegmentReader {
    private var buffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    deinit {
        self.buffer.deallocate()
    }

    /// Reads the whole file and returns its bytes, which stay valid until the next call. Swift may release an
    /// object right after its last use, so a caller keeps the reader alive with `withExtendedLifetime` for as
    /// long as it reads the bytes.
    func read(_ path: String) throws(JournalError) -> UnsafeRawBufferPointer {
        do {
            let fd = try systemCall("open") { open(path, O_RDONLY | O_CLOEXEC) }
            defer { _ = close(fd) }
            var info = stat()
            _ = try systemCall("fstat") { fstat(fd, &info) }
            let size = Int(info.st_size)
            if self.buffer.count < size {
                self.buffer.deallocate()
                // Headroom for segments a little longer than this one, which end with a longer last record.
                self.buffer = .allocate(byteCount: size + size / 8, alignment: 16)
            }
            var filled = 0
            while filled < size {
                let count = try systemCall("pread") {
                    pread(fd, self.buffer.baseAddress! + filled, size - filled, off_t(filled))
                }
                if count == 0 { break }
                filled += count
            }
            return UnsafeRawBufferPointer(rebasing: self.buffer[..<filled])
        } catch {
            throw JournalError(path: path, error)
        }
    }
}
