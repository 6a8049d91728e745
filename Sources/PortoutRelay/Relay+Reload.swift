import Dispatch
import PortoutCore
import PortoutDelivery
import Synchronization

/// The outcome of a configuration reload.
public struct ReloadReport: Sendable {
    public var tenantsAdded: [String] = []
    public var tenantsRemoved: [String] = []
    /// Tenants whose projects, signature check, accepted types, API keys or upstream changed.
    public var tenantsChanged: [String] = []
    /// Other settings that changed and took effect, by key; secrets are named, never shown.
    public var settingsChanged: [String] = []
    public var destinations = DestinationChanges()
    /// Settings that differ in the new file but take effect only at the next start; their old values stay.
    public var needsRestart: [String] = []
}

extension Relay {
    /// Swaps in a new configuration: tenants, their keys, signature checks and destinations, delivery settings,
    /// the log level, the admin token and the limit of unfinished replays. Settings of sockets, the journal and memory (`listen`, `dataDir`,
    /// `eventLoops`, `limits`, `journal`, `dedupe`, `admin.listen`, `delivery.maxRetryAfterSeconds`,
    /// `delivery.transferThreads`) keep their old values until a restart, and the report names those that differ.
    ///
    /// Each part is swapped atomically, so a request uses either the old tenant or the new one. Deliveries
    /// still pending for a removed destination stay in the journal and are reported.
    @discardableResult
    public func reload(_ requested: RelayConfig) -> ReloadReport {
        let old = self.config
        var report = ReloadReport()
        var effective = requested
        func keep<Value: Equatable>(_ name: String, _ path: WritableKeyPath<RelayConfig, Value>) {
            if requested[keyPath: path] != old[keyPath: path] {
                report.needsRestart.append(name)
                effective[keyPath: path] = old[keyPath: path]
            }
        }
        keep("listen", \.listen)
        keep("dataDir", \.dataDir)
        keep("eventLoops", \.eventLoops)
        keep("limits", \.limits)
        keep("journal", \.journal)
        keep("dedupe", \.dedupe)
        keep("delivery.maxRetryAfterSeconds", \.delivery.maxRetryAfterSeconds)
        keep("delivery.transferThreads", \.delivery.transferThreads)
        if requested.admin.listen != old.admin.listen {
            // The token belongs to the listener it guards, so the whole admin section waits for the restart.
            report.needsRestart.append("admin")
            effective.admin = old.admin
        }
        let oldTenants = Set(old.tenants.map(\.id))
        let newTenants = Set(effective.tenants.map(\.id))
        report.tenantsAdded = newTenants.subtracting(oldTenants).sorted()
        report.tenantsRemoved = oldTenants.subtracting(newTenants).sorted()
        report.tenantsChanged = effective.tenants.filter { tenant in
            guard let previous = old.tenant(tenant.id) else { return false }
            return previous.projects != tenant.projects || previous.verify != tenant.verify
                || previous.acceptTypes != tenant.acceptTypes || previous.apiKeys != tenant.apiKeys
                || previous.upstream != tenant.upstream
        }.map(\.id).sorted()
        func note<Value: Equatable>(_ name: String, _ path: KeyPath<RelayConfig, Value>) {
            if effective[keyPath: path] != old[keyPath: path] {
                report.settingsChanged.append(name)
            }
        }
        note("logLevel", \.logLevel)
        note("accessLog", \.accessLog)
        note("shutdownGraceSeconds", \.shutdownGraceSeconds)
        note("stalledAfterSeconds", \.stalledAfterSeconds)
        note("operationalWebhook", \.operationalWebhook)
        note("admin.token", \.admin.token)
        note("admin.maxUnfinishedReplays", \.admin.maxUnfinishedReplays)
        note("delivery", \.delivery)

        let destinationChanges = Locked<DestinationChanges?>(nil)
        let reconfigured = DispatchSemaphore(value: 0)
        self.engine.reconfigure(tenants: effective.tenants) { changes in
            // On the delivery thread, so that no settlement of those deliveries comes between the removal and the count.
            if let changes {
                self.replays.registry.strand(changes.strandedReplays)
            }
            destinationChanges.withLock { $0 = changes }
            reconfigured.signal()
        }
        reconfigured.wait()
        report.destinations = destinationChanges.withLock { $0 } ?? DestinationChanges()
        self.ingestor.reload(tenants: effective.tenants)
        self.readAPI.reload(tenants: effective.tenants)
        self.adminSettings.reload(effective.admin)
        self.replays.registry.maxUnfinishedJobs = effective.admin.maxUnfinishedReplays
        self.stalled.reload(thresholds: effective.stalledAfterSeconds)
        self.operational.reload(effective.operationalWebhook)
        self.logger.setLevel(effective.logLevel)
        self.server.accessLog.store(effective.accessLog, ordering: .relaxed)
        self.adminServer.accessLog.store(effective.accessLog, ordering: .relaxed)
        self.currentConfig.withLock { $0 = effective }
        self.log(report)
        return report
    }

    private func log(_ report: ReloadReport) {
        func list(_ values: [String]) -> JSONValue {
            .array(values.map { .string($0) })
        }
        let pending = report.destinations.pendingOfRemoved.sorted { $0.key < $1.key }
        self.logger.info(
            "configuration reloaded",
            [
                "tenantsAdded": list(report.tenantsAdded), "tenantsRemoved": list(report.tenantsRemoved),
                "tenantsChanged": list(report.tenantsChanged), "settingsChanged": list(report.settingsChanged),
                "destinationsAdded": list(report.destinations.added),
                "destinationsChanged": list(report.destinations.changed),
                "destinationsRemoved": list(report.destinations.removed),
                "needsRestart": list(report.needsRestart),
            ])
        for (destination, count) in pending where count > 0 {
            self.logger.warning(
                "removed destination has unsettled deliveries",
                ["destination": .string(destination), "pending": .number(Double(count)),
                 "action": "kept in the journal; they go out if the destination is configured again"])
        }
    }
}
