import CCurl
import PortoutCore

/// A failure to pause or resume a destination.
public enum DestinationControlError: Error, Sendable, Equatable {
    case notFound
    /// The engine has stopped, as it does during shutdown.
    case stopped
    /// The change was made in memory but could not be saved, so it would not survive a restart.
    case notSaved(String)
    /// A resume came while an abandonment of the destination was being journaled. If that write failed, the
    /// deliveries put back could go out after later statuses that the resume had sent meanwhile.
    case abandonmentInWrite
}

extension DeliveryEngine {
    /// Returns every destination's statistics with the acceptance time of its oldest unsettled delivery, and the
    /// destinations that are not configured but still have deliveries. Only the delivery thread can read the
    /// queues, so once the engine has stopped the times are missing and the second list is the one at the stop.
    public func snapshot(
        _ completion: @escaping @Sendable ([DestinationStatistics], [UnconfiguredDestinationStatistics]) -> Void
    ) {
        self.perform { running in
            var statistics = self.statistics()
            if running {
                for index in statistics.indices {
                    let key = Self.key(tenant: statistics[index].tenant, destination: statistics[index].destination)
                    statistics[index].oldestPendingAcceptedAtMs = self.loop.destinations[key]?.queue.oldestAcceptedAtMs
                }
                self.publishUnconfigured()
            }
            completion(statistics, self.unconfiguredStatistics())
        }
    }

    /// Returns the destinations that the configuration does not name but that have deliveries in memory, as last
    /// published by a snapshot while the engine runs, or by the stop.
    public func unconfiguredStatistics() -> [UnconfiguredDestinationStatistics] {
        self.unconfigured.withLock { $0 }
    }

    /// Counts the deliveries of detached and never-configured destinations, on the delivery thread.
    func publishUnconfigured() {
        var published: [UnconfiguredDestinationStatistics] = []
        for runtime in self.loop.detached.values where runtime.queue.count > 0 {
            published.append(UnconfiguredDestinationStatistics(
                tenant: runtime.tenant, destination: runtime.config.id, removedByReload: true,
                pending: runtime.queue.count, inFlight: runtime.queue.inFlight,
                oldestPendingAcceptedAtMs: runtime.queue.oldestAcceptedAtMs))
        }
        for (key, queue) in self.loop.unconfigured where queue.count > 0 {
            // Keys are `tenant/destination`, and configuration checks keep '/' out of both identifiers.
            let parts = key.split(separator: "/", maxSplits: 1)
            published.append(UnconfiguredDestinationStatistics(
                tenant: String(parts[0]), destination: parts.count > 1 ? String(parts[1]) : "", removedByReload: false,
                pending: queue.count, inFlight: queue.inFlight, oldestPendingAcceptedAtMs: queue.oldestAcceptedAtMs))
        }
        published.sort { ($0.tenant, $0.destination) < ($1.tenant, $1.destination) }
        self.unconfigured.withLock { $0 = published }
    }

    /// Returns the oldest journal segment that contains the event of a delivery not yet settled, for configured,
    /// detached and unconfigured destinations alike, or nil when nothing is pending. `isRunning` is false once the engine has
    /// stopped, and then the segment is unknown.
    public func oldestPendingSegment(_ completion: @escaping @Sendable (_ segment: UInt64?, _ isRunning: Bool) -> Void) {
        self.perform { running in
            guard running else { return completion(nil, false) }
            let runtimes = Array(self.loop.destinations.values) + Array(self.loop.detached.values)
            let queues = runtimes.map(\.queue) + Array(self.loop.unconfigured.values)
            let pinned = [self.loop.abandonmentsInWrite.oldestSegment].compactMap { $0 }
            completion((queues.compactMap(\.oldestSegment) + pinned).min(), true)
        }
    }

    /// Pauses a destination or makes it active again; resuming also clears a 410 disable and the breaker's count.
    /// Deliveries held meanwhile go out in their original order. The mode is saved in the data directory.
    ///
    /// Resuming also sends the deliveries waiting for a retry at once, even on a destination that was active,
    /// because the operator expects it to take them now, and after hours down the backoff could be hours more.
    ///
    /// A pause without a `reason` keeps the reason and time of a pause already in effect, so that a repeated
    /// request, from a script or a second operator, does not erase why the destination was paused.
    public func setMode(
        tenant: String, destination: String, mode: DestinationMode, reason: String?,
        completion: @escaping @Sendable (Result<DestinationStatistics, DestinationControlError>) -> Void
    ) {
        self.perform { running in
            guard running else { return completion(.failure(.stopped)) }
            let key = Self.key(tenant: tenant, destination: destination)
            guard let runtime = self.loop.destinations[key] else { return completion(.failure(.notFound)) }
            if mode == .active && self.loop.abandonmentsInWrite.contains(key: key) {
                return completion(.failure(.abandonmentInWrite))
            }
            if mode == .active {
                runtime.consecutiveFailures = 0
                let advanced = runtime.queue.makeWaitingDue(nowMs: WallClock.milliseconds())
                if advanced > 0 {
                    self.logger.info(
                        "retries made due by resume",
                        ["tenant": .string(tenant), "destination": .string(destination),
                         "deliveries": .number(Double(advanced))])
                }
            }
            var saveError: String?
            if !(mode == .paused && runtime.mode == .paused && reason == nil) {
                saveError = self.changeMode(
                    runtime, key: key, to: mode, reason: mode == .active ? "" : reason ?? Self.defaultPauseReason)
            } else if self.loop.modesSaveRetryAtMs != nil, let controlFile = self.controlFile {
                // The same pause again, after a save that failed: it is saved now, not only acknowledged.
                saveError = self.saveModesReportingFailure(controlFile, runtime: runtime)
            }
            var statistics = self.counters.withLock { $0[key]! }
            statistics.oldestPendingAcceptedAtMs = runtime.queue.oldestAcceptedAtMs
            completion(saveError.map { .failure(.notSaved($0)) } ?? .success(statistics))
        }
    }

    /// Reads the modes saved in a data directory's control file by `tenant/destination` key, for commands that
    /// run while the relay is stopped. A destination in `configured` that the file does not name counts as
    /// paused when the file records that the modes saved before some start are unknown, as the relay pauses it.
    public static func savedModes(
        controlFile path: String, configured: Set<String>
    ) throws -> [String: DestinationMode] {
        let contents = try DestinationControlFile(path: path).load()
        var modes = contents.entries.mapValues(\.mode)
        if contents.unknownModes != nil {
            for key in configured where modes[key] == nil {
                modes[key] = .paused
            }
        }
        return modes
    }

    /// The reason recorded for a pause requested without one.
    public static let defaultPauseReason = "paused by an operator"

    /// Holds a destination that returned 410 Gone until an operator resumes it. If the save fails and the process
    /// ends before a retry succeeds, `restoreDisables` rebuilds the disable from the journaled attempt.
    func disable(_ runtime: DestinationRuntime, key: String, reason: String) {
        guard runtime.mode != .disabled else { return }
        _ = self.changeMode(runtime, key: key, to: .disabled, reason: reason)
        self.logger.error(
            "destination disabled",
            ["tenant": .string(runtime.tenant), "destination": .string(runtime.config.id), "reason": .string(reason)])
        self.observer?.destinationDisabled(tenant: runtime.tenant, destination: runtime.config.id, reason: reason)
    }

    /// Changes the mode, publishes it and saves it; returns the save error, if any.
    private func changeMode(_ runtime: DestinationRuntime, key: String, to mode: DestinationMode, reason: String) -> String? {
        runtime.mode = mode
        runtime.modeReason = reason
        runtime.modeChangedAtMs = WallClock.milliseconds()
        let isModeUnknown = self.isModeUnknown(runtime)
        self.updateCounters(key) { statistics in
            statistics.mode = mode
            statistics.modeReason = reason
            statistics.modeChangedAtMs = runtime.modeChangedAtMs
            statistics.isModeUnknown = isModeUnknown
            statistics.consecutiveFailures = runtime.consecutiveFailures
            statistics.isBreakerOpen = runtime.isBreakerOpen
        }
        // A resumed destination may have deliveries due now, which the next pass starts.
        curl_multi_wakeup(self.loop.multi)
        guard let controlFile = self.controlFile else { return nil }
        return self.saveModesReportingFailure(controlFile, runtime: runtime)
    }

    /// Returns whether the relay paused `runtime` because its saved mode could not be read. Every such pause carries
    /// the reason saved in `unknownModes`, and an operator's resume, or pause with a reason of their own, replaces
    /// it.
    func isModeUnknown(_ runtime: DestinationRuntime) -> Bool {
        guard let unknown = self.loop.unknownModes else { return false }
        return runtime.mode == .paused && runtime.modeReason == unknown.reason
    }

    /// Saves the modes after `runtime` changed, and returns the error, which it logs, if the save failed.
    private func saveModesReportingFailure(
        _ controlFile: DestinationControlFile, runtime: DestinationRuntime
    ) -> String? {
        do {
            try self.saveModes(controlFile)
            return nil
        } catch {
            self.logger.error(
                "destination mode not saved",
                ["tenant": .string(runtime.tenant), "destination": .string(runtime.config.id),
                 "path": .string(controlFile.path), "error": .string(error.description),
                 "effect": .string("saving is tried again every \(Self.modesSaveRetryMs / 1000) s and at the stop")])
            return error.description
        }
    }

    /// How long after a failed save of the modes the engine tries again.
    static let modesSaveRetryMs: Int64 = 5000

    /// Writes the modes of every destination, configured, removed by a reload or held while not configured. A
    /// failure schedules another try, since a mode the file lacks is lost at the next start.
    func saveModes(_ controlFile: DestinationControlFile) throws(SystemError) {
        do {
            try controlFile.save(
                Array(self.loop.destinations.values) + Array(self.loop.detached.values),
                unconfigured: self.loop.heldUnconfigured, unknownModes: self.loop.unknownModes)
        } catch {
            self.loop.modesSaveRetryAtMs = WallClock.milliseconds() + Self.modesSaveRetryMs
            throw error
        }
        if self.loop.modesSaveRetryAtMs != nil {
            // The line an operator waits for after a 500 modeNotSaved or a "not saved" line, whichever save it is.
            self.logger.info("destination modes saved", ["path": .string(controlFile.path)])
        }
        self.loop.modesSaveRetryAtMs = nil
        // The file now has this run's modes, so the unreadable one it replaced is gone either way.
        self.loop.savesKeepModesFile = false
    }

    /// Saves the modes again if a save failed and its retry is due. `force` tries at once, as at the stop.
    func retryModesSave(nowMs: Int64, force: Bool = false) {
        guard let due = self.loop.modesSaveRetryAtMs, force || nowMs >= due, let controlFile = self.controlFile else {
            return
        }
        self.saveModesLoggingFailure(controlFile)
    }

    /// Holds a paused mode for a destination that is not configured but has deliveries waiting, when its saved
    /// mode is unknown. The destination may have been held before, so a reload that configures it again pauses
    /// it. Returns whether the mode is new, so that the caller saves the modes once for a batch.
    func holdUnconfiguredWithUnknownMode(_ key: String) -> Bool {
        guard let unknown = self.loop.unknownModes, self.loop.heldUnconfigured[key] == nil else { return false }
        self.loop.heldUnconfigured[key] = DestinationControlFile.Entry(
            mode: .paused, reason: unknown.reason, changedAtMs: WallClock.milliseconds())
        self.logger.warning(
            "unconfigured destination will start paused",
            ["destination": .string(key), "reason": .string(unknown.reason)])
        return true
    }

    /// Pauses a configured destination that the saved modes do not name, when a start could not read them, since
    /// they may have held it. A pause only delays its deliveries until a resume.
    func pauseWithUnknownMode(_ runtime: DestinationRuntime, key: String, reason: String) {
        runtime.mode = .paused
        runtime.modeReason = reason
        runtime.modeChangedAtMs = WallClock.milliseconds()
        self.logger.warning(
            "destination paused; its saved mode is unknown", ["destination": .string(key), "reason": .string(reason)])
    }

    /// Pauses every configured destination when the saved modes cannot be read. Starting them all active could
    /// send to one that an operator paused or a 410 disabled, while a pause only delays deliveries until a resume.
    /// The saves from here on record that the modes are unknown, so that a destination configured at a later
    /// start or reload is paused too. The file is linked aside first, so that saving the pauses does not lose it.
    /// It stays in place until that save replaces it, so a failed save leaves the next start to pause every
    /// destination again.
    private func pauseEveryDestination(_ controlFile: DestinationControlFile, unreadableBecause error: String) {
        let copiedTo = DurableFile.linkAside(path: controlFile.path)
        let nowMs = WallClock.milliseconds()
        // Dated, because later starts give the same reason to a destination that the saved file does not name.
        let reason =
            "destinations.json could not be read at the start at \(RFC3339.format(epochMilliseconds: nowMs)), so "
            + "the modes saved before it are unknown. Resume each destination that should be sending."
        let runtimes = self.loop.destinations.values.sorted { ($0.tenant, $0.config.id) < ($1.tenant, $1.config.id) }
        self.loop.unknownModes = DestinationControlFile.UnknownModes(reason: reason, sinceMs: nowMs)
        self.loop.savesKeepModesFile = copiedTo == nil
        for runtime in runtimes {
            runtime.mode = .paused
            runtime.modeReason = reason
            runtime.modeChangedAtMs = nowMs
        }
        self.logger.error(
            "destination modes not restored; every destination paused",
            ["path": .string(controlFile.path), "error": .string(error),
             "copiedTo": copiedTo.map { .string($0) } ?? .null, "destinations": .number(Double(runtimes.count)),
             "action": copiedTo == nil
                ? "copy the file aside by hand before resuming a destination, since that saves the modes over it"
                : "check the copied file, then resume each destination that should be sending"])
        // Without the copy, the unreadable file stays for the next start to pause everything again.
        guard copiedTo != nil else { return }
        self.saveModesLoggingFailure(controlFile)
    }

    /// Saves the modes as `saveModes` does and logs a failure, for changes that no operator request waits on.
    func saveModesLoggingFailure(_ controlFile: DestinationControlFile) {
        do {
            try self.saveModes(controlFile)
        } catch {
            self.logger.error(
                "destination modes not saved", ["path": .string(controlFile.path), "error": .string(error.description)])
        }
    }

    /// Disables each configured destination that the saved modes show as active with no change since its last
    /// journaled 410, because the disable was not saved, and keeps the times for destinations a reload adds. Runs
    /// in `init` after `restoreModes`.
    func restoreDisables(_ goneDestinations: GoneDestinations) {
        self.loop.goneSinceMs = goneDestinations.sinceMs
        var rebuilt = false
        for (key, runtime) in self.loop.destinations.sorted(by: { $0.key < $1.key }) {
            rebuilt = self.disableIfGoneUnsaved(runtime, key: key) || rebuilt
        }
        if rebuilt, !self.loop.savesKeepModesFile, let controlFile = self.controlFile {
            self.saveModesLoggingFailure(controlFile)
        }
    }

    /// Disables a destination again when the journal has a 410 from it after its last saved change of mode, so
    /// after any resume or pause. Returns whether it did, and the caller saves the modes.
    func disableIfGoneUnsaved(_ runtime: DestinationRuntime, key: String) -> Bool {
        guard let sinceMs = self.loop.goneSinceMs[key], runtime.mode != .disabled, runtime.modeChangedAtMs < sinceMs
        else { return false }
        runtime.mode = .disabled
        runtime.modeReason = "destination answered 410 Gone"
        runtime.modeChangedAtMs = sinceMs
        self.logger.warning(
            "destination disabled again from the journal",
            ["destination": .string(key), "reason": .string(runtime.modeReason),
             "cause": "the journal has a 410 from it after the last change of its mode that was saved"])
        return true
    }

    /// Applies the modes saved before the last stop. Runs in `init`, before the delivery thread starts.
    func restoreModes() {
        guard let controlFile = self.controlFile else { return }
        var contents: DestinationControlFile.Contents
        do {
            contents = try controlFile.load()
        } catch {
            self.pauseEveryDestination(controlFile, unreadableBecause: "\(error)")
            return
        }
        self.loop.unknownModes = contents.unknownModes
        if !contents.namesEveryDestination {
            // An older file shows no resume of a destination it does not name, so a 410 in the journal before now
            // is taken as resumed. Saved below, so that a later 410 is not taken as resumed at the next start.
            let nowMs = WallClock.milliseconds()
            for (key, runtime) in self.loop.destinations where contents.entries[key] == nil {
                runtime.modeChangedAtMs = nowMs
            }
            // Nor does it give the time of a pause or disable it names. A paused destination sends nothing, so a
            // 410 in the journal came before its pause. The alerts on a long pause then count from now, not from
            // the Unix epoch.
            for key in contents.entries.keys where contents.entries[key]?.changedAtMs == 0 {
                contents.entries[key]?.changedAtMs = nowMs
            }
        }
        var savesAfterApplying = !contents.namesEveryDestination
        if let unknown = contents.unknownModes {
            for (key, runtime) in self.loop.destinations.sorted(by: { $0.key < $1.key })
            where contents.entries[key] == nil {
                self.pauseWithUnknownMode(runtime, key: key, reason: unknown.reason)
                savesAfterApplying = true
            }
        }
        defer {
            // Saved once every entry is applied, so that the pauses outlast `unknownModes` if an operator removes it
            // from the file, and an older file's destinations keep this start's time. A save before that would
            // write the file's held destinations as active.
            if savesAfterApplying {
                self.saveModesLoggingFailure(controlFile)
            }
        }
        // Active entries hold nothing back: they give the time of the destination's last change of mode.
        for (key, entry) in contents.entries.sorted(by: { $0.key < $1.key }) {
            guard let runtime = self.loop.destinations[key] else {
                self.loop.heldUnconfigured[key] = entry
                if entry.mode != .active {
                    self.logger.warning(
                        "held destination is not configured; its mode applies if it is configured again",
                        ["destination": .string(key), "mode": .string(entry.mode.rawValue)])
                }
                continue
            }
            runtime.mode = entry.mode
            runtime.modeReason = entry.reason
            runtime.modeChangedAtMs = entry.changedAtMs
            guard entry.mode != .active else { continue }
            self.logger.warning(
                "destination held since before the restart",
                ["tenant": .string(runtime.tenant), "destination": .string(runtime.config.id),
                 "mode": .string(entry.mode.rawValue), "reason": .string(entry.reason)])
        }
    }
}
