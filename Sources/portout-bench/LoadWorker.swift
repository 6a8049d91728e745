import Foundation
import PortoutCore

/// The figures that one connection's worker measured.
struct WorkerOutcome: Sendable {
    /// Scheduled send time to end of response, in nanoseconds, for each recorded request that got a response.
    var latenciesNs: [Int64] = []
    /// Recorded requests that got a response with a status outside 200-299.
    var non2xx = 0
    /// Recorded requests that failed without a response: connect, send or receive errors and timeouts.
    var errors = 0
    /// Recorded requests whose send started more than 1 ms after their scheduled time.
    var lateSends = 0
    /// End of the last response, on `MonotonicClock`.
    var lastResponseNs: Int64 = 0
    /// The first error, for the report.
    var firstError: String?
}

/// Sends the requests `index`, `index + stride`, `index + 2 * stride`, ... on one connection, each at its
/// scheduled time or, when the previous response came late, as soon as that response ends.
struct LoadWorker: Sendable {
    let index: Int
    let stride: Int
    let options: LoadOptions
    let schedule: LoadSchedule
    let requests: [[UInt8]]
    let connection: LoadConnection

    func run() -> WorkerOutcome {
        var outcome = WorkerOutcome()
        var connection: LoadConnection? = self.connection
        for requestIndex in Swift.stride(from: self.index, to: self.requests.count, by: self.stride) {
            let dueNs = self.schedule.sendTimeNs(requestIndex)
            MonotonicClock.sleep(untilNs: dueNs)
            let isRecorded = requestIndex >= self.schedule.warmupRequests
            if isRecorded && MonotonicClock.nowNs() - dueNs > 1_000_000 {
                outcome.lateSends += 1
            }
            do {
                if connection == nil {
                    connection = try LoadConnection(
                        address: self.options.address,
                        port: self.options.port,
                        timeoutMs: self.options.timeoutMs
                    )
                }
                try connection!.send(self.requests[requestIndex])
                let status = try connection!.readResponse()
                let endNs = MonotonicClock.nowNs()
                if connection!.isClosedByServer {
                    connection = nil
                }
                guard isRecorded else { continue }
                outcome.latenciesNs.append(endNs - dueNs)
                outcome.lastResponseNs = max(outcome.lastResponseNs, endNs)
                if !(200...299).contains(status) {
                    outcome.non2xx += 1
                }
            } catch {
                // The next request opens a new connection, since this one may be half-way through a response.
                connection = nil
                if isRecorded {
                    outcome.errors += 1
                    outcome.firstError = outcome.firstError ?? "\(error)"
                }
            }
        }
        return outcome
    }
}

/// The figures of a whole run, over every worker's recorded requests.
struct LoadSummary {
    let offeredRate: Int
    let connections: Int
    let responses: Int
    let non2xx: Int
    let errors: Int
    let lateSends: Int
    let measuredNs: Int64
    /// Sorted ascending.
    let latenciesNs: [Int64]
    let firstError: String?

    init(_ outcomes: [WorkerOutcome], schedule: LoadSchedule, options: LoadOptions) {
        self.offeredRate = options.rate
        self.connections = options.connections
        self.latenciesNs = outcomes.flatMap(\.latenciesNs).sorted()
        self.responses = self.latenciesNs.count
        self.non2xx = outcomes.reduce(0) { $0 + $1.non2xx }
        self.errors = outcomes.reduce(0) { $0 + $1.errors }
        self.lateSends = outcomes.reduce(0) { $0 + $1.lateSends }
        let lastResponseNs = outcomes.map(\.lastResponseNs).max() ?? schedule.measuredStartNs
        // The measured part lasts its nominal duration, or longer when responses came in after it.
        let nominalNs = Int64(options.durationSeconds) * 1_000_000_000
        self.measuredNs = max(nominalNs, lastResponseNs - schedule.measuredStartNs)
        self.firstError = outcomes.compactMap(\.firstError).first
    }

    /// The latency at `percent` by the nearest-rank method, in microseconds, or 0 with no responses.
    func percentileUs(_ percent: Double) -> Double {
        nearestRankUs(self.latenciesNs, percent)
    }

    /// Returns the figures as one line of JSON, with latencies in microseconds.
    func json() -> String {
        // Responses over the time from the first recorded request's due time to the end of the measured part.
        let achievedRate = Double(self.responses) / (Double(self.measuredNs) / 1e9)
        var fields: [String: Any] = [
            "offeredRate": self.offeredRate, "connections": self.connections, "achievedRate": achievedRate,
            "responses": self.responses, "non2xx": self.non2xx, "errors": self.errors, "lateSends": self.lateSends,
            "durationUs": self.measuredNs / 1000,
        ]
        for (name, percent) in [("p50Us", 50.0), ("p90Us", 90.0), ("p99Us", 99.0), ("p999Us", 99.9), ("maxUs", 100.0)] {
            fields[name] = self.percentileUs(percent)
        }
        if let firstError = self.firstError {
            fields["firstError"] = firstError
        }
        // JSONSerialization fails only on non-finite numbers. The rate is finite because measuredNs is at least the
        // --duration, which option parsing keeps at one second or more.
        let data = try! JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}

/// The value at `percent` of durations sorted in ascending order, by the nearest-rank method, in microseconds,
/// or 0 when there are none. The rank is computed in tenths of a percent with integers, because in floating point
/// 99.9 / 100 * 1000 rounds up to one rank too many.
func nearestRankUs(_ sortedNs: [Int64], _ percent: Double) -> Double {
    guard !sortedNs.isEmpty else { return 0 }
    let perMille = Int((percent * 10).rounded())
    let rank = (perMille * sortedNs.count + 999) / 1000
    let index = min(max(rank, 1), sortedNs.count) - 1
    return Double(sortedNs[index]) / 1000
}
