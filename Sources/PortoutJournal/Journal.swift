import Foundation
import PortoutCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The append-only journal: segment files under one directory, written by one thread with group commit.
///
/// Records appended while a write is in progress are written together and share one `fdatasync`. Each
/// completion runs only after that sync returned, so a caller that sends 2xx from its completion never
/// acknowledges a record that is not on disk. Completions run on the writer thread, in append order.
///
/// Thread-safety: `append`, `read` and `close` may be called from any thread.
public final class Journal: Sendable {
    public typealias Completion = @Sendable (Result<JournalLocation, JournalError>) -> Void

    public let directory: String
    public let metrics: JournalMetrics
    private let segmentBytes: Int
    let logger: Logger
    private let queue = Locked<Queue>(Queue())
    private let wakeUp = DispatchSemaphore(value: 0)
    private let stopped = DispatchSemaphore(value: 0)
    private let readers = SegmentReaders()
    /// The segment the writer appends to, published for retention, which must never remove it.
    private let currentSegment: Atomic<UInt64>
    private let writer: WriterState
    /// Descriptors holding an exclusive `flock` on `journal.lock` and on the journal directory while the journal
    /// is open.
    private let lockFDs: [Int32]

    private struct Entry {
        var payload: [UInt8]
        /// Whether the completion waits for `fdatasync`.
        var durable: Bool
        var completion: Completion?
    }

    private struct Queue {
        var pending: [Entry] = []
        var isClosing = false
    }

    /// The open segment and the next one; touched only by the writer thread after `open` returns.
    final class WriterState: @unchecked Sendable {
        var active: ActiveSegment
        /// The next segment, created and synced ahead of time off the writer thread, so that rotating costs the
        /// writer no file creation or directory sync while requests wait on it.
        let prepared = Locked<ActiveSegment?>(nil)
        var isPreparing = false
        /// Entered while a segment is being prepared, so that closing waits for it.
        let preparation = DispatchGroup()

        init(active: ActiveSegment) {
            self.active = active
        }
    }

    /// Opens the journal in `directory`, creating it if needed; recovers every segment, calling `visit` with
    /// each valid record in order, then starts the writer thread. Without `includeBodies`, events reach `visit`
    /// with empty bodies, which `read(at:)` fetches when they are needed, and with the text fields in `omitting`
    /// empty. `lane`, if given, also gets every event, on a second thread, and is done with them when `open`
    /// returns.
    public static func open(
        directory: String, segmentBytes: Int, logger: Logger, includeBodies: Bool = true,
        omitting: OmittedEventText = [], metrics: JournalMetrics = JournalMetrics(), lane: (any RecoveryLane)? = nil,
        visit: (JournalRecord, JournalLocation) -> Void
    ) throws(JournalError) -> Journal {
        do {
            // Owner only, with the files in it, because events carry account numbers.
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw JournalError(path: directory, reason: "cannot create the journal directory: \(error)")
        }
        let lockFDs = try self.lock(directory)
        let journal: Journal
        do {
            let recovery = try JournalRecovery(
                directory: directory, logger: logger, includeBodies: includeBodies, omitting: omitting, lane: lane)
            let (segment, size) = try recovery.run(visit: visit)
            let writer = WriterState(
                active: try ActiveSegment.open(
                    directory: directory, segment: segment, size: size, segmentBytes: segmentBytes, besideWriter: false,
                    logger: logger))
            journal = Journal(
                directory: directory, segmentBytes: segmentBytes, logger: logger, metrics: metrics, writer: writer,
                lockFDs: lockFDs)
        } catch {
            lockFDs.forEach { Glibc.close($0) }
            throw error
        }
        startNamedThread("journal-writer") { journal.runWriter() }
        return journal
    }

    private init(
        directory: String, segmentBytes: Int, logger: Logger, metrics: JournalMetrics, writer: WriterState, lockFDs: [Int32]
    ) {
        self.directory = directory
        self.metrics = metrics
        self.segmentBytes = segmentBytes
        self.logger = logger
        self.writer = writer
        self.lockFDs = lockFDs
        self.currentSegment = Atomic(writer.active.segment)
    }

    /// Takes exclusive locks so that a second relay on the same data directory fails at start instead of
    /// writing the same segments. The lock on `journal.lock` is the one earlier versions take. The lock on the
    /// directory itself still holds when someone deletes that file, which would let a second relay lock a new
    /// file of the same name.
    private static func lock(_ directory: String) throws(JournalError) -> [Int32] {
        let file = try self.lock(path: directory + "/journal.lock", flags: O_RDWR | O_CREAT)
        do {
            return [file, try self.lock(path: directory, flags: O_RDONLY | O_DIRECTORY)]
        } catch {
            Glibc.close(file)
            throw error
        }
    }

    private static func lock(path: String, flags: Int32) throws(JournalError) -> Int32 {
        do {
            let fd = try systemCall("open") { Glibc.open(path, flags | O_CLOEXEC, 0o600) }
            // A child process spawned by this one keeps a copy of the lock until it executes its program, so a
            // lock that was just released may stay taken for a moment. Only one taken for a whole second means
            // another relay.
            var attempts = 0
            while true {
                do {
                    _ = try systemCall("flock") { flock(fd, LOCK_EX | LOCK_NB) }
                    return fd
                } catch where error.errno == EWOULDBLOCK && attempts < 100 {
                    attempts += 1
                    usleep(10_000)
                } catch {
                    Glibc.close(fd)
                    if error.errno == EWOULDBLOCK {
                        throw JournalError(path: path, reason: "the journal is in use by another process", errno: error.errno)
                    }
                    throw JournalError(path: path, error)
                }
            }
        } catch let error as JournalError {
            throw error
        } catch {
            throw JournalError(path: path, reason: "\(error)")
        }
    }

    /// Queues a record; `completion` runs on the writer thread once it is durable or has failed. A record the
    /// journal refuses at once, because it is closed or the record is over the frame limit, completes on another
    /// thread.
    ///
    /// Records are written in the order of `append` calls, so callers that need an order (event sequence
    /// numbers) call it under their own lock.
    public func append(_ record: JournalRecord, completion: @escaping Completion) {
        self.enqueue([Entry(payload: record.encoded(), durable: true, completion: completion)])
    }

    /// Queues records whose loss in a crash is tolerable, such as delivery outcomes: a lost one only means an
    /// attempt is made again. A batch holding only such records is written without waiting for `fdatasync`;
    /// the next durable write syncs them too. `completion` runs once, after the last record is written.
    public func appendAdvisory(_ records: [JournalRecord], completion: @escaping Completion) {
        self.append(records, durable: false, completion: completion)
    }

    /// Queues records to be written in order; `completion` runs once, after the last is durable or has failed.
    public func appendAll(_ records: [JournalRecord], completion: @escaping Completion) {
        self.append(records, durable: true, completion: completion)
    }

    /// Records encoded ahead of `appendAll(encoded:)`, so that a caller can keep the encoding off a busy thread.
    public struct EncodedRecords: Sendable {
        fileprivate var payloads: [[UInt8]]
    }

    public func encode(_ records: [JournalRecord]) -> EncodedRecords {
        EncodedRecords(payloads: records.map { $0.encoded() })
    }

    /// Queues records encoded by `encode`, as `appendAll` does.
    public func appendAll(encoded records: EncodedRecords, completion: @escaping Completion) {
        self.append(payloads: records.payloads, durable: true, completion: completion)
    }

    private func append(_ records: [JournalRecord], durable: Bool, completion: @escaping Completion) {
        self.append(payloads: records.map { $0.encoded() }, durable: durable, completion: completion)
    }

    private func append(payloads: [[UInt8]], durable: Bool, completion: @escaping Completion) {
        guard !payloads.isEmpty else { return }
        var entries = payloads.map { Entry(payload: $0, durable: durable, completion: nil) }
        entries[entries.count - 1].completion = completion
        self.enqueue(entries)
    }

    private func enqueue(_ entries: [Entry]) {
        // Recovery takes a longer frame for damage, so such a record would be lost after being acknowledged.
        if let oversized = entries.first(where: { $0.payload.count > SegmentFile.maxPayloadBytes }) {
            Self.fail(entries, JournalError(
                path: self.directory,
                reason: "a record of \(oversized.payload.count) bytes is larger than the frame limit of \(SegmentFile.maxPayloadBytes)"))
            return
        }
        let accepted = self.queue.withLock { queue -> Bool in
            guard !queue.isClosing else { return false }
            queue.pending.append(contentsOf: entries)
            return true
        }
        if accepted {
            self.wakeUp.signal()
        } else {
            Self.fail(entries, JournalError(path: self.directory, reason: "the journal is closed"))
        }
    }

    /// Calls the completions of records refused before they reach the writer, on another thread. A caller may
    /// append under a lock that its completion takes too, as ingest does to keep sequence numbers in order.
    private static func fail(_ entries: [Entry], _ error: JournalError) {
        let completions = entries.compactMap(\.completion)
        DispatchQueue.global().async {
            for completion in completions {
                completion(.failure(error))
            }
        }
    }

    /// Writes what is queued, then stops the writer thread. Later appends fail.
    public func close() {
        let alreadyClosing = self.queue.withLock { queue -> Bool in
            defer { queue.isClosing = true }
            return queue.isClosing
        }
        guard !alreadyClosing else { return }
        self.wakeUp.signal()
        self.stopped.wait()
        self.readers.closeAll()
        self.lockFDs.forEach { Glibc.close($0) }
    }

    /// Reads one record back, as the delivery path does for a body it did not keep in memory.
    public func read(at location: JournalLocation) throws(JournalError) -> JournalRecord {
        try self.withPayload(at: location) { payload, path throws(JournalError) in
            guard let record = JournalRecord.decode(payload) else {
                throw JournalError(path: path(), reason: "record at offset \(location.offset) is corrupt")
            }
            return record
        }
    }

    /// Reads only an event's body and whether it is a bare object.
    public func readEventBody(at location: JournalLocation) throws(JournalError) -> (body: [UInt8], isBare: Bool) {
        try self.withPayload(at: location) { payload, path throws(JournalError) in
            guard let event = JournalRecord.eventBody(payload) else {
                throw JournalError(path: path(), reason: "record at offset \(location.offset) is not an event")
            }
            return event
        }
    }

    /// Reads a frame, checks its checksum, which catches damage since the journal was recovered, and passes the
    /// payload to `body` without copying it.
    private func withPayload<Value>(
        at location: JournalLocation, _ body: (UnsafeRawBufferPointer, () -> String) throws(JournalError) -> Value
    ) throws(JournalError) -> Value {
        // The path is built only for an error message, since reads are on the read API's hot path.
        let path = { self.path(of: location.segment) }
        let total = SegmentFile.frameHeaderBytes + Int(location.length)
        var frame = [UInt8](repeating: 0, count: total)
        let count = try self.readers.withDescriptor(segment: location.segment, path: path) { fd throws(JournalError) in
            do throws(SystemError) {
                return try systemCall("pread") {
                    frame.withUnsafeMutableBytes { pread(fd, $0.baseAddress, total, off_t(location.offset)) }
                }
            } catch {
                throw JournalError(path: path(), error)
            }
        }
        guard count == total else {
            throw JournalError(path: path(), reason: "record at offset \(location.offset) is cut short")
        }
        let checksum = SegmentFile.readUInt32(frame, at: 4)
        let outcome = frame.withUnsafeBytes { bytes -> Swift.Result<Value, JournalError> in
            let payload = UnsafeRawBufferPointer(rebasing: bytes[SegmentFile.frameHeaderBytes...])
            guard CRC32C.checksum(payload) == checksum else {
                return .failure(JournalError(path: path(), reason: "record at offset \(location.offset) fails its checksum"))
            }
            do throws(JournalError) {
                return .success(try body(payload, path))
            } catch {
                return .failure(error)
            }
        }
        return try outcome.get()
    }

    /// The segment the writer appends to now.
    public var activeSegment: UInt64 {
        self.currentSegment.load(ordering: .acquiring)
    }

    /// Counts the segment files and their bytes on disk.
    public func diskUsage() -> (segments: Int, bytes: Int) {
        Self.diskUsage(directory: self.directory)
    }

    /// Counts the segment files in `directory` and their bytes; a journal not yet created has none.
    public static func diskUsage(directory: String) -> (segments: Int, bytes: Int) {
        let segments = (try? SegmentFile.segments(in: directory)) ?? []
        var bytes = 0
        for segment in segments {
            var status = stat()
            if stat(directory + "/" + SegmentFile.name(for: segment), &status) == 0 {
                bytes += Int(status.st_size)
            }
        }
        return (segments.count, bytes)
    }

    /// Takes the read descriptors of removed segments out of use, closing each now or after the last read
    /// using it.
    func retireReaders(_ segments: [UInt64]) {
        self.readers.retire(segments)
    }

    private func path(of segment: UInt64) -> String {
        self.directory + "/" + SegmentFile.name(for: segment)
    }

    // MARK: Writer thread

    private func runWriter() {
        while true {
            self.wakeUp.wait()
            let (batch, isClosing) = self.queue.withLock { queue in
                (queue.pending.takeAll(), queue.isClosing)
            }
            if !batch.isEmpty {
                self.write(batch)
            }
            if isClosing && self.queue.withLock({ $0.pending.isEmpty }) {
                // Advisory records may still be unsynced; a clean stop keeps them too. The preallocated zeros
                // are cut off, so that a stopped journal's files hold only what was written; the next start
                // preallocates again.
                _ = fdatasync(self.writer.active.fd)
                self.writer.active.close()
                // A segment prepared ahead stays on disk, empty; the next start appends to it.
                self.writer.preparation.wait()
                self.writer.prepared.withLock { $0 }?.close()
                self.stopped.signal()
                return
            }
        }
    }

    private func write(_ batch: [Entry]) {
        self.metrics.writes.beginWrite()
        let state = self.writer
        do {
            if state.active.size >= self.segmentBytes {
                try self.rotate()
            }
            let active = state.active
            var bytes: [UInt8] = []
            bytes.reserveCapacity(batch.reduce(0) { $0 + $1.payload.count + SegmentFile.frameHeaderBytes })
            var locations: [JournalLocation] = []
            locations.reserveCapacity(batch.count)
            for entry in batch {
                let offset = Int64(active.size + bytes.count)
                locations.append(JournalLocation(segment: active.segment, offset: offset, length: Int32(entry.payload.count)))
                SegmentFile.frame(entry.payload, into: &bytes)
            }
            active.prepareToWrite(upTo: active.size + bytes.count)
            try Self.writeFully(active.fd, bytes, at: active.size)
            if batch.contains(where: \.durable) {
                let syncStart = DispatchTime.now().uptimeNanoseconds
                _ = try systemCall("fdatasync") { fdatasync(active.fd) }
                self.metrics.syncDuration.observe(Double(DispatchTime.now().uptimeNanoseconds - syncStart) / 1e9)
            }
            self.metrics.recordsWritten.increment(by: UInt64(batch.count))
            self.metrics.bytesWritten.increment(by: UInt64(bytes.count))
            self.metrics.groupCommitRecords.observe(Double(batch.count))
            self.metrics.writes.recordSuccess()
            active.size += bytes.count
            active.didWrite()
            self.prepareNextSegmentIfDue()
            for (entry, location) in zip(batch, locations) {
                entry.completion?(.success(location))
            }
        } catch {
            let failure: JournalError
            if let systemError = error as? SystemError {
                failure = JournalError(path: state.active.path, systemError)
            } else {
                failure = error as? JournalError ?? JournalError(path: self.directory, reason: "\(error)")
            }
            self.metrics.writeFailures.increment()
            self.metrics.writes.recordFailure(atMs: WriteHealth.nowMs())
            self.repairAfterFailure(failure, records: batch.count)
            for entry in batch {
                entry.completion?(.failure(failure))
            }
        }
    }

    /// Cuts the segment back to its last durable size so a partly written batch never reaches a reader.
    private func repairAfterFailure(_ failure: JournalError, records: Int) {
        let truncated = self.writer.active.truncate()
        self.logger.error(
            "journal write failed",
            [
                "error": .string(failure.reason), "path": .string(failure.path),
                "records": .number(Double(records)), "truncated": .bool(truncated),
            ])
    }

    private func rotate() throws {
        let state = self.writer
        let next = try SegmentFile.next(after: state.active.segment, directory: self.directory)
        // A preparation still running would otherwise create the same file beside the writer, preallocate zeros
        // over records written into it, and leave a second descriptor for it to be cut at close. Waiting costs
        // only when the writer fills the last quarter of a segment faster than the preparation creates one.
        state.preparation.wait()
        let prepared = state.prepared.withLock { prepared -> ActiveSegment? in
            defer { prepared = nil }
            return prepared?.segment == next ? prepared : nil
        }
        let opened = try prepared
            ?? ActiveSegment.open(
                directory: self.directory, segment: next, size: 0, segmentBytes: self.segmentBytes, besideWriter: false,
                logger: self.logger)
        state.active.close()
        state.active = opened
        self.currentSegment.store(opened.segment, ordering: .releasing)
        state.isPreparing = false
        self.logger.info("journal segment started", ["segment": .string(SegmentFile.name(for: next))])
    }

    /// Creates the next segment on another thread once the active one is three quarters full.
    private func prepareNextSegmentIfDue() {
        let state = self.writer
        guard !state.isPreparing, state.active.size >= self.segmentBytes / 4 * 3,
            let next = try? SegmentFile.next(after: state.active.segment, directory: self.directory)
        else { return }
        state.isPreparing = true
        let directory = self.directory
        let logger = self.logger
        let segmentBytes = self.segmentBytes
        state.preparation.enter()
        DispatchQueue.global(qos: .utility).async {
            defer { state.preparation.leave() }
            do {
                let created = try ActiveSegment.open(
                    directory: directory, segment: next, size: 0, segmentBytes: segmentBytes, besideWriter: true,
                    logger: logger)
                state.prepared.withLock { $0 = created }
            } catch {
                // The writer creates the segment itself when it rotates, so this only costs latency.
                logger.warning("journal segment not prepared", ["error": .string("\(error)")])
            }
        }
    }

    /// Writes all of `bytes` at `offset`, continuing after short writes.
    public static func writeFully(_ fd: Int32, _ bytes: [UInt8], at offset: Int) throws(SystemError) {
        var written = 0
        while written < bytes.count {
            let count = try systemCall("pwrite") {
                bytes.withUnsafeBytes { buffer in
                    pwrite(fd, buffer.baseAddress! + written, buffer.count - written, off_t(offset + written))
                }
            }
            written += count
        }
    }
}
