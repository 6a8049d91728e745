import Foundation
import PortoutCore
import PortoutJournal
import Synchronization

/// Times `fdatasync` after small appends to a file whose blocks are already written, as the relay's journal
/// writer does, while `--busy-threads` threads spin. The relay acknowledges no event before its sync returns,
/// so the slowest syncs on a machine bound its ack latency. This measures that bound without the relay.
func runSyncProbe(_ arguments: [String]) throws -> Int32 {
    guard let directory = option("--dir", in: arguments), !directory.isEmpty else {
        throw UsageError("--dir is required: the directory to time, such as the relay's data directory")
    }
    let writes = try integerOption("--writes", in: arguments, range: 1...1_000_000)
    let recordBytes = try integerOption("--record-bytes", in: arguments, range: 1...(1 << 20), default: 2048)
    let busyThreads = try integerOption("--busy-threads", in: arguments, range: 0...64, default: 0)
    let fileBytes = writes * recordBytes
    guard fileBytes <= 1 << 30 else {
        throw UsageError("--writes times --record-bytes is \(fileBytes) bytes, over the 1 GiB limit: lower either one")
    }

    let probe = try ProbeFile(directory: directory)
    defer { probe.remove() }
    // The file is zeroed and synced first, so each timed sync flushes data only and never changes the file size.
    let zeros = [UInt8](repeating: 0, count: 1 << 20)
    for offset in stride(from: 0, to: fileBytes, by: zeros.count) {
        let count = min(zeros.count, fileBytes - offset)
        try probe.write(count == zeros.count ? zeros : Array(zeros.prefix(count)), at: offset)
    }
    try probe.sync()

    let spinners = try Spinners(count: busyThreads)
    defer { spinners.stop() }
    let record = [UInt8](repeating: UInt8(ascii: "r"), count: recordBytes)
    var durationsNs: [Int64] = []
    durationsNs.reserveCapacity(writes)
    let started = MonotonicClock.nowNs()
    for index in 0..<writes {
        try probe.write(record, at: index * recordBytes)
        let before = MonotonicClock.nowNs()
        try probe.sync()
        durationsNs.append(MonotonicClock.nowNs() - before)
    }
    let elapsedUs = (MonotonicClock.nowNs() - started) / 1000

    durationsNs.sort()
    let slowNs = durationsNs.filter { $0 > 5_000_000 }
    var fields: [String: Any] = [
        "writes": writes, "recordBytes": recordBytes, "busyThreads": busyThreads, "durationUs": elapsedUs,
        "over5ms": slowNs.count, "over5msTotalUs": slowNs.reduce(0, +) / 1000,
    ]
    for (name, percent) in [("p50Us", 50.0), ("p99Us", 99.0), ("p999Us", 99.9), ("maxUs", 100.0)] {
        fields[name] = nearestRankUs(durationsNs, percent)
    }
    let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
    return 0
}

/// The probe's own file: created under a fresh name, so that it never truncates or follows anything already in
/// the directory, and removed on return and on SIGINT or SIGTERM.
private struct ProbeFile {
    let path: String
    let fd: Int32

    init(directory: String) throws {
        var template = Array((directory + "/sync-probe-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard fd >= 0 else {
            throw SystemError(operation: "create a file in \(directory) (--dir must be an existing directory)", errno: errno)
        }
        self.path = path
        self.fd = fd
        ProbeFile.removeOnSignal(path)
    }

    func write(_ bytes: [UInt8], at offset: Int) throws {
        do {
            try Journal.writeFully(self.fd, bytes, at: offset)
        } catch {
            throw SystemError(operation: "pwrite \(self.path)", errno: error.errno)
        }
    }

    func sync() throws {
        do {
            _ = try systemCall("fdatasync") { fdatasync(self.fd) }
        } catch {
            throw SystemError(operation: "fdatasync \(self.path)", errno: error.errno)
        }
    }

    func remove() {
        close(self.fd)
        unlink(self.path)
    }

    /// The path a signal handler removes, as a C string allocated once and never freed, because a handler may
    /// only touch memory that stays valid.
    nonisolated(unsafe) private static var pathForSignal: UnsafeMutablePointer<CChar>?

    private static func removeOnSignal(_ path: String) {
        self.pathForSignal = strdup(path)
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber) { received in
                if let path = ProbeFile.pathForSignal {
                    unlink(path)
                }
                _exit(128 + received)
            }
        }
    }
}

/// Threads that keep CPUs busy until stopped. Started with `pthread_create`, whose failure is reported, since
/// Foundation's `Thread.start` gives no sign that a thread did not start.
private final class Spinners: Sendable {
    private let running = Atomic<Bool>(true)
    nonisolated(unsafe) private var threads: [pthread_t] = []

    init(count: Int) throws {
        for _ in 0..<count {
            var thread = pthread_t()
            let context = Unmanaged.passRetained(self).toOpaque()
            let status = pthread_create(&thread, nil, { context in
                let spinners = Unmanaged<Spinners>.fromOpaque(context!).takeRetainedValue()
                while spinners.running.load(ordering: .relaxed) {}
                return nil
            }, context)
            guard status == 0 else {
                Unmanaged<Spinners>.fromOpaque(context).release()
                self.stop()
                throw SystemError(operation: "start busy thread \(self.threads.count + 1) of \(count)", errno: status)
            }
            self.threads.append(thread)
        }
    }

    func stop() {
        self.running.store(false, ordering: .relaxed)
        for thread in self.threads {
            pthread_join(thread, nil)
        }
        self.threads.removeAll()
    }
}
