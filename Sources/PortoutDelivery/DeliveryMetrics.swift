import PortoutCore

/// Delivery metrics that are counted as attempts finish; queue gauges are read from `DestinationStatistics`.
public final class DeliveryMetrics: Sendable {
    public let attempts = CounterFamily(
        name: "portout_delivery_attempts_total",
        help: "Delivery attempts by outcome (delivered, retryScheduled, deadLettered) and response status class.",
        labelNames: ["tenant", "destination", "outcome", "status_class"])
    public let duration = HistogramFamily(
        name: "portout_delivery_duration_seconds",
        help: "Seconds from starting a delivery attempt to its response or transport failure.",
        labelNames: ["tenant", "destination"], bounds: Histogram.secondsBounds)

    public init() {}

    /// Returns the class label of a response status (`2xx` to `5xx`), or `none` when no response arrived.
    static func statusClass(_ status: Int?) -> String {
        guard let status, (100..<600).contains(status) else { return "none" }
        return "\(status / 100)xx"
    }
}
