import Dispatch
import Foundation
import PortoutCore

#if canImport(Glibc)
    import Glibc
#endif

/// Runs `portout-bench load`: sends the requests on their schedule, waits for the last response and prints the
/// figures as one JSON line. Returns the exit status.
func runOpenLoopLoad(_ arguments: [String]) throws -> Int32 {
    let options: LoadOptions
    do {
        options = try LoadOptions(arguments)
    } catch let error as UsageError {
        StandardError.write("portout-bench load: \(error)\n\n\(usage)\n")
        return 2
    }
    let requests = try loadRequests(options)

    // Every connection is open before the clock starts, so connecting does not count against the first requests.
    var connections: [LoadConnection] = []
    for _ in 0..<options.connections {
        connections.append(
            try LoadConnection(address: options.address, port: options.port, timeoutMs: options.timeoutMs)
        )
    }

    let schedule = LoadSchedule(
        startNs: MonotonicClock.nowNs() + 50_000_000,
        rate: options.rate,
        warmupRequests: options.warmupRequests
    )
    let outcomes = Locked<[WorkerOutcome]>([])
    let group = DispatchGroup()
    for (index, connection) in connections.enumerated() {
        let worker = LoadWorker(
            index: index,
            stride: options.connections,
            options: options,
            schedule: schedule,
            requests: requests,
            connection: connection
        )
        group.enter()
        let thread = Thread {
            let outcome = worker.run()
            outcomes.withLock { $0.append(outcome) }
            group.leave()
        }
        thread.start()
    }
    connections.removeAll()
    group.wait()

    let summary = LoadSummary(outcomes.withLock { $0 }, schedule: schedule, options: options)
    print(summary.json())
    return 0
}

/// Reads the first `options.totalRequests` events of the events file and builds one complete request for each.
///
/// The file has one event a line, with tab-separated columns: body, `webhook-id`, `webhook-timestamp`,
/// `webhook-signature`, `X-Hub-Signature-256` and the request path.
func loadRequests(_ options: LoadOptions) throws -> [[UInt8]] {
    guard let file = fopen(options.eventsPath, "r") else {
        throw SystemError(operation: "open \(options.eventsPath)", errno: errno)
    }
    defer { fclose(file) }
    var requests: [[UInt8]] = []
    requests.reserveCapacity(options.totalRequests)
    var line: UnsafeMutablePointer<CChar>?
    var capacity = 0
    defer { free(line) }
    while requests.count < options.totalRequests, getline(&line, &capacity, file) > 0 {
        let text = String(cString: line!).trimmingCharacters(in: .newlines)
        let columns = text.split(separator: "\t", omittingEmptySubsequences: false)
        guard columns.count == 6 else {
            throw UsageError(
                "line \(requests.count + 1) of \(options.eventsPath) has \(columns.count) columns, not 6: "
                    + "write it with bench/signed_events.py"
            )
        }
        let path = options.path ?? String(columns[5])
        let body = Array(columns[0].utf8)
        let fields = [
            "POST \(path) HTTP/1.1", "Host: \(options.authority)", "Content-Type: application/json",
            "Content-Length: \(body.count)", "webhook-id: \(columns[1])", "webhook-timestamp: \(columns[2])",
            "webhook-signature: \(columns[3])", "X-Hub-Signature-256: \(columns[4])",
        ]
        let head = fields.joined(separator: "\r\n") + "\r\n\r\n"
        requests.append(Array(head.utf8) + body)
    }
    guard requests.count == options.totalRequests else {
        let seconds = options.warmupSeconds + options.durationSeconds
        throw UsageError(
            "\(options.eventsPath) has \(requests.count) events, but --rate \(options.rate) for \(seconds) s needs "
                + "\(options.totalRequests), one per request: write more events or lower the rate"
        )
    }
    return requests
}

/// Nanoseconds on `CLOCK_MONOTONIC`, and sleeping until a point on it.
enum MonotonicClock {
    static func nowNs() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
    }

    /// Sleeps until `deadlineNs`, or returns at once when it has passed.
    static func sleep(untilNs deadlineNs: Int64) {
        var spec = timespec(tv_sec: Int(deadlineNs / 1_000_000_000), tv_nsec: Int(deadlineNs % 1_000_000_000))
        while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &spec, nil) == EINTR {}
    }
}

/// The send time of every request: request `i` is due `i / rate` seconds after the start.
struct LoadSchedule: Sendable {
    let startNs: Int64
    let rate: Int
    let warmupRequests: Int

    func sendTimeNs(_ index: Int) -> Int64 {
        self.startNs + Int64(index) * 1_000_000_000 / Int64(self.rate)
    }

    /// The start of the measured part, when the first recorded request is due.
    var measuredStartNs: Int64 { self.sendTimeNs(self.warmupRequests) }
}
