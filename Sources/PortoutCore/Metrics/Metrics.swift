import Synchronization

/// A monotonically increasing count, safe to increment from any thread.
public final class Counter: Sendable {
    private let storage = Atomic<UInt64>(0)

    public init() {}

    public func increment(by amount: UInt64 = 1) {
        self.storage.wrappingAdd(amount, ordering: .relaxed)
    }

    public var value: UInt64 {
        self.storage.load(ordering: .relaxed)
    }
}

/// Observations counted into cumulative buckets, as a Prometheus histogram reports them.
///
/// Thread-safety: `observe` and `snapshot` may be called from any thread. One lock guards the buckets, so a
/// snapshot never shows a count that disagrees with its buckets.
public final class Histogram: Sendable {
    /// Upper bounds of the buckets, ascending; the implicit last bucket is +Inf.
    public let bounds: [Double]
    private let state: Locked<Snapshot>

    public struct Snapshot: Sendable {
        /// Observations at or below each bound, not cumulative; the last element counts those above every bound.
        public var bucketCounts: [UInt64]
        public var sum: Double = 0
        public var count: UInt64 = 0
    }

    public init(bounds: [Double]) {
        precondition(bounds == bounds.sorted() && !bounds.isEmpty, "histogram bounds must be ascending and not empty")
        self.bounds = bounds
        self.state = Locked(Snapshot(bucketCounts: Array(repeating: 0, count: bounds.count + 1)))
    }

    public func observe(_ value: Double) {
        let index = self.bounds.firstIndex { value <= $0 } ?? self.bounds.count
        self.state.withLock { state in
            state.bucketCounts[index] += 1
            state.sum += value
            state.count += 1
        }
    }

    public func snapshot() -> Snapshot {
        self.state.withLock { $0 }
    }

    /// Bounds for durations in seconds from 100 µs to 10 s.
    public static let secondsBounds: [Double] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]
}

/// A family of counters that differ only in their label values, created on first use.
///
/// Thread-safety: `labels` may be called from any thread. Callers on a hot path keep the returned counter
/// instead of looking it up per event.
public final class CounterFamily: Sendable {
    public let name: String
    public let help: String
    public let labelNames: [String]
    private let members: LabeledMembers<Counter>

    public init(name: String, help: String, labelNames: [String]) {
        self.name = name
        self.help = help
        self.labelNames = labelNames
        self.members = LabeledMembers(name: name, labelCount: labelNames.count)
    }

    public func labels(_ values: String...) -> Counter {
        self.members.member(values) { Counter() }
    }

    /// Returns every member's label values and count, sorted by label values so that the output is stable.
    public func samples() -> [(labels: [String], value: UInt64)] {
        self.members.all().map { ($0.labels, $0.metric.value) }
    }
}

/// A family of histograms that differ only in their label values, created on first use.
public final class HistogramFamily: Sendable {
    public let name: String
    public let help: String
    public let labelNames: [String]
    public let bounds: [Double]
    private let members: LabeledMembers<Histogram>

    public init(name: String, help: String, labelNames: [String], bounds: [Double]) {
        self.name = name
        self.help = help
        self.labelNames = labelNames
        self.bounds = bounds
        self.members = LabeledMembers(name: name, labelCount: labelNames.count)
    }

    public func labels(_ values: String...) -> Histogram {
        self.members.member(values) { Histogram(bounds: self.bounds) }
    }

    public func samples() -> [(labels: [String], snapshot: Histogram.Snapshot)] {
        self.members.all().map { ($0.labels, $0.metric.snapshot()) }
    }
}

/// The members of a metric family by label values, behind one lock.
final class LabeledMembers<Metric: AnyObject & Sendable>: Sendable {
    private let name: String
    private let labelCount: Int
    private let members = Locked<[[String]: Metric]>([:])

    init(name: String, labelCount: Int) {
        self.name = name
        self.labelCount = labelCount
    }

    /// Returns the member with these label values, creating it with `make` on first use.
    func member(_ values: [String], make: () -> Metric) -> Metric {
        precondition(values.count == self.labelCount, "\(self.name) takes \(self.labelCount) label values")
        return self.members.withLock { members in
            if let existing = members[values] {
                return existing
            }
            let created = make()
            members[values] = created
            return created
        }
    }

    /// Returns every member, sorted by label values.
    func all() -> [(labels: [String], metric: Metric)] {
        self.members.withLock { members in
            members.map { ($0.key, $0.value) }
        }.sorted { $0.labels.lexicographicallyPrecedes($1.labels) }
    }
}
