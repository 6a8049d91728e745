import Foundation
import PortoutCore
import PortoutJournal
import Synchronization

/// Times `fdatasync` after small appends to a file whose blocks are already written, as the relay's journal
/// writer does, while `--busy-threads` threads spin. The relay acknowledges no event before its sync returns,
/// so the slowest syncs on a machine bound its ack latency: this measures that bound without the relay.
func runSyncProbe(_ arguments: [String]) throws -> Int32 {
    guard let directory = option("--dir", in: arguments) else { throw UsageError("--dir is required") }
    let writes = try integerOption("--writes", in: arguments, range: 1...1_000_000)
    let recordBytes = try integerOption("--record-bytes", in: arguments, range: 1...(1 << 20), default: 2048)
    let busyThreads = try integerOption("--busy-threads", in: arguments, range: 0...64, default: 0)
    let fileBytes = writes * recordBytes
    guard fileBytes <= 1 << 30 else {
        throw UsageError("--writes times --record-bytes is \(fileBytes) bytes, over the 1 GiB limit: lower either one")
    }

    let path = directory + "/sync-probe.dat"
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw SystemError(operation: "open \(path)", errno: errno) }
    defer {
        close(fd)
        unlink(path)
    }
    // The file is zeroed and synced first, so each timed sync flushes data only and never changes the file size.
    let zeros = [UInt8](repeating: 0, count: 1 << 20)
    for offset in stride(from: 0, to: fileBytes, by: zeros.count) {
        let count = min(zeros.count, fileBytes - offset)
        try Journal.writeFully(fd, count == zeros.count ? zeros : Array(zeros.prefix(count)), at: offset)
    }
    _ = try systemCall("fdatasync") { fdatasync(fd) }

    let spinning = Atomic<Bool>(true)
    let spinners = DispatchGroup()
    for index in 0..<busyThreads {
        spinners.enter()
        startNamedThread("spin-\(index)") {
            while spinning.load(ordering: .relaxed) {}
            spinners.leave()
        }
    }
    let record = [UInt8](repeating: UInt8(ascii: "r"), count: recordBytes)
    var durationsNs: [Int64] = []
    durationsNs.reserveCapacity(writes)
    let started = MonotonicClock.nowNs()
    defer {
        spinning.store(false, ordering: .relaxed)
        spinners.wait()
    }
    for index in 0..<writes {
        try Journal.writeFully(fd, record, at: index * recordBytes)
        let before = MonotonicClock.nowNs()
        _ = try systemCall("fdatasync") { fdatasync(fd) }
        durationsNs.append(MonotonicClock.nowNs() - before)
    }
    let elapsedUs = (MonotonicClock.nowNs() - started) / 1000

    durationsNs.sort()
    var fields: [String: Any] = [
        "writes": writes, "recordBytes": recordBytes, "busyThreads": busyThreads, "durationUs": elapsedUs,
        "over5ms": durationsNs.count { $0 > 5_000_000 },
        "over5msTotalUs": durationsNs.lazy.filter { $0 > 5_000_000 }.reduce(0, +) / 1000,
    ]
    for (name, percent) in [("p50Us", 50.0), ("p99Us", 99.0), ("p999Us", 99.9), ("maxUs", 100.0)] {
        fields[name] = nearestRankUs(durationsNs, percent)
    }
    let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
    return 0
}
