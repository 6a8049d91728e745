/// Writes metrics in the Prometheus text exposition format, version 0.0.4.
///
/// Each metric family is written once, with its `# HELP` and `# TYPE` lines before its samples, as the format
/// requires. Label values are escaped (backslash, double quote, line feed).
public struct PrometheusText {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public private(set) var text = ""

    public init() {}

    public mutating func counter(_ family: CounterFamily) {
        self.header(family.name, help: family.help, type: "counter")
        for sample in family.samples() {
            self.sample(family.name, labels: zip(family.labelNames, sample.labels), value: Double(sample.value))
        }
    }

    public mutating func counter(_ name: String, help: String, value: UInt64) {
        self.counter(name, help: help, samples: [([], Double(value))])
    }

    /// Writes a counter family whose samples are given as label values and counts.
    public mutating func counter(
        _ name: String, help: String, labelNames: [String] = [], samples: [(labels: [String], value: Double)]
    ) {
        self.header(name, help: help, type: "counter")
        for sample in samples {
            self.sample(name, labels: zip(labelNames, sample.labels), value: sample.value)
        }
    }

    public mutating func histogram(_ family: HistogramFamily) {
        self.header(family.name, help: family.help, type: "histogram")
        for sample in family.samples() {
            self.histogramSamples(
                family.name, labels: Array(zip(family.labelNames, sample.labels)), bounds: family.bounds,
                snapshot: sample.snapshot)
        }
    }

    public mutating func histogram(_ name: String, help: String, _ histogram: Histogram) {
        self.header(name, help: help, type: "histogram")
        self.histogramSamples(name, labels: [], bounds: histogram.bounds, snapshot: histogram.snapshot())
    }

    /// Writes a gauge family whose samples are given as label values and numbers.
    public mutating func gauge(
        _ name: String, help: String, labelNames: [String] = [], samples: [(labels: [String], value: Double)]
    ) {
        self.header(name, help: help, type: "gauge")
        for sample in samples {
            self.sample(name, labels: zip(labelNames, sample.labels), value: sample.value)
        }
    }

    private mutating func histogramSamples(
        _ name: String, labels: [(String, String)], bounds: [Double], snapshot: Histogram.Snapshot
    ) {
        var cumulative: UInt64 = 0
        for (index, bound) in bounds.enumerated() {
            cumulative += snapshot.bucketCounts[index]
            self.sample(name + "_bucket", labels: labels + [("le", Self.format(bound))], value: Double(cumulative))
        }
        self.sample(name + "_bucket", labels: labels + [("le", "+Inf")], value: Double(snapshot.count))
        self.sample(name + "_sum", labels: labels, value: snapshot.sum)
        self.sample(name + "_count", labels: labels, value: Double(snapshot.count))
    }

    private mutating func header(_ name: String, help: String, type: String) {
        self.text += "# HELP \(name) \(Self.escapeHelp(help))\n# TYPE \(name) \(type)\n"
    }

    private mutating func sample<Labels: Sequence<(String, String)>>(_ name: String, labels: Labels, value: Double) {
        self.text += name
        var first = true
        for (labelName, labelValue) in labels {
            self.text += first ? "{" : ","
            self.text += "\(labelName)=\"\(Self.escapeLabelValue(labelValue))\""
            first = false
        }
        if !first {
            self.text += "}"
        }
        self.text += " \(Self.format(value))\n"
    }

    /// Formats a number as Go's `strconv.ParseFloat` reads it: integers without a fraction, others in Swift's
    /// shortest round-trip form.
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 {
            return String(Int64(value))
        }
        return "\(value)"
    }

    static func escapeLabelValue(_ value: String) -> String {
        self.escape(value, quotes: true)
    }

    /// Escapes backslashes and line feeds, and double quotes too inside a label value; help text keeps them.
    static func escapeHelp(_ value: String) -> String {
        self.escape(value, quotes: false)
    }

    private static func escape(_ value: String, quotes: Bool) -> String {
        var escaped = ""
        escaped.reserveCapacity(value.utf8.count)
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": escaped += "\\\\"
            case "\"" where quotes: escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }
}
