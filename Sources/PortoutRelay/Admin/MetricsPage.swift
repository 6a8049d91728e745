import Foundation
import PortoutCore
import PortoutDelivery
import PortoutHTTP
import PortoutJournal

/// Everything `/metrics` reports, gathered from the parts of a running relay.
struct MetricsPage: Sendable {
    let ingest: IngestMetrics
    let journal: Journal
    let engine: DeliveryEngine
    let server: HTTPServer
    let stalled: StalledPortOuts
    let deadLetters: DeadLetterIndex
    let startedAtMs: Int64
    /// How long a page waits for the delivery thread before it renders without it.
    static let snapshotTimeoutSeconds = 2.0

    /// Renders the page; destination gauges come from the delivery thread, so the text arrives in `completion`.
    ///
    /// The delivery thread can block, as when saving destinations.json on a disk that stopped responding. The
    /// page then comes after `snapshotTimeoutSeconds` with every destination gauge but the oldest pending ages, which
    /// only that thread can read, so that a scrape still shows the journal write in progress.
    func render(_ completion: @escaping @Sendable (String) -> Void) {
        let rendered = Locked(false)
        let finish = { @Sendable (render: () -> String) in
            let isFirst = rendered.withLock { done in
                defer { done = true }
                return !done
            }
            if isFirst {
                completion(render())
            }
        }
        self.engine.snapshot { destinations, unconfigured in
            finish {
                self.text(
                    destinations: destinations, unconfigured: unconfigured, isSnapshotLate: false,
                    nowMs: WallClock.milliseconds())
            }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + Self.snapshotTimeoutSeconds) {
            finish {
                self.text(
                    destinations: self.engine.statistics(),
                    unconfigured: self.engine.unconfiguredStatistics(), isSnapshotLate: true,
                    nowMs: WallClock.milliseconds())
            }
        }
    }

    private func text(
        destinations: [DestinationStatistics], unconfigured: [UnconfiguredDestinationStatistics],
        isSnapshotLate: Bool, nowMs: Int64
    ) -> String {
        var page = PrometheusText()
        page.gauge(
            "portout_build_info", help: "The running version; always 1.", labelNames: ["version"],
            samples: [([RelayVersion.current], 1)])
        page.gauge(
            "portout_start_time_seconds", help: "When the relay started, in seconds since the Unix epoch.",
            samples: [([], Double(self.startedAtMs) / 1000)])
        page.gauge(
            "portout_http_open_connections", help: "Open connections on the webhook and API listener.",
            samples: [([], Double(self.server.connectionCount))])
        page.gauge(
            "portout_http_buffered_request_bytes",
            help: "Bytes read on the webhook and API listener for requests that have no response yet.",
            samples: [([], Double(self.server.bufferedBytes))])
        let rejections = self.server.connectionRejectionCounts
        page.counter(
            "portout_http_connection_rejections_total",
            help: "Connections closed at accept with a 503 because limits.maxConnections or "
                + "limits.maxConnectionsPerClient was reached.",
            labelNames: ["limit"],
            samples: [(["maxConnections"], Double(rejections.total)), (["maxConnectionsPerClient"], Double(rejections.perClient))])
        let bufferRejections = self.server.bufferFullRejectionCounts
        page.counter(
            "portout_http_buffer_full_rejections_total",
            help: "Requests that got a 503 response because limits.maxBufferedRequestBytes, or the client address's "
                + "share of it, was reached.",
            labelNames: ["limit"],
            samples: [
                (["maxBufferedRequestBytes"], Double(bufferRejections.total)),
                (["clientShare"], Double(bufferRejections.perClient)),
            ])
        page.counter(self.ingest.requests)
        page.counter(self.ingest.signatureFailures)
        page.counter(self.ingest.duplicates)
        page.counter(self.ingest.staleEvents)
        page.gauge(
            "portout_stalled_port_outs",
            help: "Port outs in a non-terminal status for longer than its stalledAfterSeconds threshold.",
            labelNames: ["tenant", "status"],
            samples: self.stalled.counts().map { ([$0.tenant, $0.status.rawValue], Double($0.count)) })
        page.gauge(
            "portout_dead_letters_listed", help: "Dead letters not yet redelivered, as GET /admin/dead-letters lists them.",
            samples: [([], Double(self.deadLetters.count))])
        self.journalMetrics(into: &page)
        let timeout = Int(Self.snapshotTimeoutSeconds)
        page.gauge(
            "portout_delivery_thread_blocked",
            help: "1 when the delivery thread did not respond to this scrape within \(timeout) s, so that the page "
                + "leaves out the oldest pending ages, which only that thread reads. Nothing is delivered while it is "
                + "blocked.",
            samples: [([], isSnapshotLate ? 1 : 0)])
        self.deliveryMetrics(destinations, withOldestPending: !isSnapshotLate, nowMs: nowMs, into: &page)
        page.gauge(
            "portout_delivery_unconfigured_queue_depth",
            help: "Unsettled deliveries kept for a destination the configuration does not name. Nothing is sent to it "
                + "until a reload or a restart configures it again.",
            labelNames: ["tenant", "destination"],
            samples: unconfigured.map { ([$0.tenant, $0.destination], Double($0.pending)) })
        return page.text
    }

    private func journalMetrics(into page: inout PrometheusText) {
        let usage = self.journal.diskUsage()
        let metrics = self.journal.metrics
        page.gauge("portout_journal_bytes", help: "Bytes of journal segments on disk.", samples: [([], Double(usage.bytes))])
        page.gauge("portout_journal_segments", help: "Journal segment files on disk.", samples: [([], Double(usage.segments))])
        page.counter(
            "portout_journal_records_written_total", help: "Records written to the journal since start.",
            value: metrics.recordsWritten.value)
        page.counter(
            "portout_journal_bytes_written_total", help: "Bytes written to the journal since start, framing included.",
            value: metrics.bytesWritten.value)
        page.counter(
            "portout_journal_write_failures_total", help: "Journal batches whose write or sync failed since start.",
            value: metrics.writeFailures.value)
        page.gauge(
            "portout_journal_write_in_progress_seconds",
            help: "Seconds that the journal write or fdatasync in progress has taken so far, or 0 when none is in "
                + "progress.",
            samples: [([], metrics.writes.inFlightSeconds(nowMs: WriteHealth.nowMs()))])
        page.histogram("portout_journal_fsync_seconds", help: "Duration of each journal fdatasync.", metrics.syncDuration)
        page.histogram(
            "portout_journal_group_commit_records", help: "Records written in one journal batch.", metrics.groupCommitRecords)
    }

    private func deliveryMetrics(
        _ destinations: [DestinationStatistics], withOldestPending: Bool, nowMs: Int64, into page: inout PrometheusText
    ) {
        let labelNames = ["tenant", "destination"]
        func gauge(_ name: String, _ help: String, _ value: (DestinationStatistics) -> Double) {
            page.gauge(
                name, help: help, labelNames: labelNames,
                samples: destinations.map { ([$0.tenant, $0.destination], value($0)) })
        }
        page.counter(self.engine.metrics.attempts)
        page.counter(
            "portout_delivery_retries_total", help: "Failed delivery attempts that were scheduled again.",
            labelNames: labelNames, samples: destinations.map { ([$0.tenant, $0.destination], Double($0.retries)) })
        page.counter(
            "portout_dead_letters_total", help: "Deliveries that gave up and were dead-lettered.",
            labelNames: labelNames, samples: destinations.map { ([$0.tenant, $0.destination], Double($0.deadLettered)) })
        page.counter(
            "portout_delivery_abandoned_total",
            help: "Held deliveries that an operator abandoned, which are dead letters but not in portout_dead_letters_total.",
            labelNames: labelNames, samples: destinations.map { ([$0.tenant, $0.destination], Double($0.abandoned)) })
        gauge("portout_delivery_queue_depth", "Deliveries not yet settled, in flight included.") { Double($0.pending) }
        gauge("portout_delivery_in_flight", "Delivery attempts in flight.") { Double($0.inFlight) }
        if withOldestPending {
            gauge(
                "portout_delivery_oldest_pending_age_seconds",
                "Seconds since the oldest unsettled delivery's event was accepted, or since a replay queued it; 0 when "
                    + "none is pending."
            ) { statistics in
                statistics.oldestPendingAcceptedAtMs.map { Double(max(0, nowMs - $0)) / 1000 } ?? 0
            }
        }
        gauge("portout_delivery_consecutive_failures", "Failed attempts since the destination's last success.") {
            Double($0.consecutiveFailures)
        }
        page.gauge(
            "portout_destination_mode", help: "1 for the destination's current mode: active, paused or disabled.",
            labelNames: ["tenant", "destination", "mode"],
            samples: destinations.flatMap { statistics in
                DestinationMode.allCases.map { ([statistics.tenant, statistics.destination, $0.rawValue], statistics.mode == $0 ? 1 : 0) }
            })
        gauge(
            "portout_destination_mode_changed_timestamp_seconds",
            "When the destination's mode last changed, in seconds since the Unix epoch, across restarts; 0 when it has "
                + "not changed since the destination was configured."
        ) { Double($0.modeChangedAtMs) / 1000 }
        gauge(
            "portout_destination_mode_unknown",
            "1 while the destination is paused because its saved mode could not be read, until an operator resumes it "
                + "or pauses it with a reason."
        ) { $0.isModeUnknown ? 1 : 0 }
        gauge("portout_destination_breaker_open", "1 while the destination gets one delivery at a time after failures.") {
            $0.isBreakerOpen ? 1 : 0
        }
        page.histogram(self.engine.metrics.duration)
    }
}
