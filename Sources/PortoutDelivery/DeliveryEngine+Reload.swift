import PortoutCore

/// The destinations a configuration reload added, changed and removed, by `tenant/destination` key.
public struct DestinationChanges: Sendable, Equatable {
    public var added: [String] = []
    public var changed: [String] = []
    public var removed: [String] = []
    /// Unsettled deliveries of each removed destination. They stay in the journal and in memory, and go out if a
    /// later reload or restart configures the destination again.
    public var pendingOfRemoved: [String: Int] = [:]
    /// Replayed deliveries waiting for the removed destinations, not in flight, that this reload marked as
    /// stranded, by replay id.
    public var strandedReplays: [String: Int] = [:]

    public init() {}
}

extension DeliveryEngine {
    /// Swaps in the destinations of a reloaded configuration on the delivery thread, and calls `completion` there.
    ///
    /// A changed destination keeps its queue, mode and failure count. A removed one is detached: nothing more is
    /// started for it, and attempts in flight settle as usual. An added one takes over the deliveries held for it
    /// while it was not configured. `completion` gets nil if the engine has stopped.
    public func reconfigure(
        tenants: [TenantConfig], completion: @escaping @Sendable (DestinationChanges?) -> Void
    ) {
        self.perform { running in
            guard running else { return completion(nil) }
            completion(self.applyDestinations(tenants))
        }
    }

    private func applyDestinations(_ tenants: [TenantConfig]) -> DestinationChanges {
        var changes = DestinationChanges()
        var updated: [String: DestinationRuntime] = [:]
        var modesChanged = false
        for tenant in tenants {
            for config in tenant.destinations {
                let key = Self.key(tenant: tenant.id, destination: config.id)
                if let current = self.loop.destinations[key] {
                    if current.config != config {
                        changes.changed.append(key)
                    }
                    updated[key] = current.config == config ? current : DestinationRuntime(config: config, takingOver: current, metrics: self.metrics)
                } else if let detached = self.loop.detached.removeValue(forKey: key) {
                    changes.added.append(key)
                    updated[key] = DestinationRuntime(config: config, takingOver: detached, metrics: self.metrics)
                } else {
                    changes.added.append(key)
                    let runtime = DestinationRuntime(tenant: tenant.id, config: config, metrics: self.metrics)
                    if let held = self.loop.unconfigured.removeValue(forKey: key) {
                        runtime.queue = held
                    }
                    if let saved = self.loop.heldUnconfigured.removeValue(forKey: key) {
                        runtime.mode = saved.mode
                        runtime.modeReason = saved.reason
                        runtime.modeChangedAtMs = saved.changedAtMs
                    } else if let unknown = self.loop.unknownModes {
                        // The unreadable file may have held it too, disabled by a 410 with nothing waiting.
                        self.pauseWithUnknownMode(runtime, key: key, reason: unknown.reason)
                        modesChanged = true
                    }
                    modesChanged = self.disableIfGoneUnsaved(runtime, key: key) || modesChanged
                    updated[key] = runtime
                }
            }
        }
        for (key, runtime) in self.loop.destinations where updated[key] == nil {
            changes.removed.append(key)
            changes.pendingOfRemoved[key] = runtime.queue.count
            changes.strandedReplays.merge(runtime.queue.markStranded(), uniquingKeysWith: +)
            self.loop.detached[key] = runtime
            self.loop.detachedStatistics[key] = self.counters.withLock { $0[key] }
        }
        self.loop.destinations = updated
        if modesChanged, !self.loop.savesKeepModesFile, let controlFile = self.controlFile {
            self.saveModesLoggingFailure(controlFile)
        }
        self.loop.updateConnectionLimit()
        self.publishCounters()
        changes.added.sort()
        changes.changed.sort()
        changes.removed.sort()
        return changes
    }

    /// Rebuilds the published statistics for the configured destinations, keeping the counts of those that stay
    /// and of those added back after a reload removed them.
    func publishCounters() {
        let loop = self.loop
        self.counters.withLock { counters in
            var published: [String: DestinationStatistics] = [:]
            for (key, runtime) in loop.destinations {
                var statistics = counters[key] ?? loop.detachedStatistics.removeValue(forKey: key)
                    ?? DestinationStatistics(tenant: runtime.tenant, destination: runtime.config.id)
                statistics.mode = runtime.mode
                statistics.modeReason = runtime.modeReason
                statistics.modeChangedAtMs = runtime.modeChangedAtMs
                statistics.isModeUnknown = self.isModeUnknown(runtime)
                statistics.pending = runtime.queue.count
                statistics.inFlight = runtime.queue.inFlight
                statistics.consecutiveFailures = runtime.consecutiveFailures
                statistics.isBreakerOpen = runtime.isBreakerOpen
                published[key] = statistics
            }
            counters = published
        }
    }
}
