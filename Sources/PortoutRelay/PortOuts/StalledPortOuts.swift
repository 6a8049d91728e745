import PortoutCore
import PortoutDelivery
import Synchronization

/// Port outs that sit in a non-terminal status longer than the configured threshold for that status.
final class StalledPortOuts: Sendable {
    private let store: PortOutStore
    private let thresholds: Locked<[PortOutStatus: Int]>

    init(store: PortOutStore, thresholds: [PortOutStatus: Int]) {
        self.store = store
        self.thresholds = Locked(thresholds)
    }

    /// Swaps in the thresholds of a reloaded configuration.
    func reload(thresholds: [PortOutStatus: Int]) {
        self.thresholds.withLock { $0 = thresholds }
    }

    /// Returns the stalled port outs, oldest first; `olderThanSeconds` replaces every status's threshold.
    func list(olderThanSeconds: Int?, tenant: String?, statuses: Set<PortOutStatus>?) -> [PortOutIndex.Stalled] {
        var thresholds = self.thresholds.withLock { $0 }
        if let olderThanSeconds {
            thresholds = thresholds.mapValues { _ in olderThanSeconds }
        }
        if let statuses {
            thresholds = thresholds.filter { statuses.contains($0.key) }
        }
        return self.store.stalled(
            nowMs: WallClock.milliseconds(), thresholdsMs: thresholds.mapValues { Int64($0) * 1000 }, tenant: tenant)
    }

    /// Counts the stalled port outs by tenant and status, for the metrics gauge.
    func counts() -> [(tenant: String, status: PortOutStatus, count: Int)] {
        var counts: [String: [PortOutStatus: Int]] = [:]
        for stalled in self.list(olderThanSeconds: nil, tenant: nil, statuses: nil) {
            counts[stalled.tenant, default: [:]][stalled.status, default: 0] += 1
        }
        return counts.keys.sorted().flatMap { tenant in
            counts[tenant]!.keys.sorted().map { (tenant, $0, counts[tenant]![$0]!) }
        }
    }

    /// Parses a duration such as `90s`, `15m`, `2h`, `3d` or a plain number of seconds.
    static func parseDuration(_ text: String) -> Int? {
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        var digits = Substring(text)
        var unit = 1
        if let last = text.last, let multiplier = units[last] {
            digits = digits.dropLast()
            unit = multiplier
        }
        guard let value = Int(digits), value > 0, value <= 31_536_000 / unit else { return nil }
        return value * unit
    }
}
