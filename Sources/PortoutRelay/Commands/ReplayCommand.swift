import Dispatch
import Foundation
import PortoutCore
import PortoutDelivery
import PortoutJournal
import Synchronization

/// `portout-relay replay`: replays deliveries through a running relay's admin listener, or with `--offline`
/// straight from the journal while the relay is stopped.
enum ReplayCommand {
    static let valueOptions: Set<String> = [
        "--config", "--admin-url", "--data-dir", "--tenant", "--destination", "--port-out", "--event", "--status",
        "--type", "--from", "--to", "--wait",
    ]
    static let flagOptions: Set<String> = ["--offline", "--dead-lettered-only", "--dry-run"]

    /// Flag names by filter field.
    private static let filterFlags: [String: String] = [
        "tenant": "--tenant", "destination": "--destination", "portOut": "--port-out", "event": "--event",
        "status": "--status", "type": "--type", "from": "--from", "to": "--to",
    ]

    static func run(_ arguments: ArraySlice<String>, output: @escaping @Sendable (String) -> Void) throws -> Int32 {
        let options = try CommandArguments(arguments, valueOptions: self.valueOptions, flagOptions: self.flagOptions)
        let filter = try self.filter(options)
        let config = try RelayConfig.load(path: options["--config"] ?? "config.json")
        let progress = ReplayProgressPrinter(output: output)
        let wait = try options["--wait"].map { text -> Double in
            guard let seconds = Double(text), seconds >= 0, seconds <= 86_400 else {
                throw UsageError("--wait must be a number of seconds from 0 to 86400")
            }
            return seconds
        }
        if options.has("--offline") {
            try self.checkConfigured(filter, config: config)
            return try OfflineReplay(
                config: config, dataDirectory: options["--data-dir"] ?? config.dataDir, filter: filter,
                dryRun: options.has("--dry-run"), waitSeconds: wait ?? 300, progress: progress
            ).run()
        }
        guard options["--data-dir"] == nil else {
            throw UsageError("--data-dir applies only with --offline")
        }
        let url = options["--admin-url"] ?? "http://\(config.admin.listen)"
        return try OnlineReplay(
            adminURL: url, token: config.admin.token?.value, filter: filter, dryRun: options.has("--dry-run"),
            waitSeconds: wait, progress: progress
        ).run()
    }

    /// Rejects a tenant or destination that the configuration does not have, since nothing could be sent to it.
    private static func checkConfigured(_ filter: DeliveryFilter, config: RelayConfig) throws {
        let configured = config.tenants.flatMap { tenant in
            tenant.destinations.map { (tenant: tenant.id, destination: $0.id) }
        }
        if let issue = filter.unconfiguredIssue(configured) {
            throw CommandError("\(issue.field) \(issue.message)")
        }
    }

    /// The value options that give a filter's fields, for commands that take a filter.
    static var filterValueOptions: Set<String> {
        Set(self.filterFlags.values)
    }

    /// Reads the filter flags. A replay needs at least one (`required`), where a listing takes all deliveries.
    static func filter(_ options: CommandArguments, required: Bool = true) throws -> DeliveryFilter {
        let parsed = DeliveryFilter.parse { field in
            if field == "deadLetteredOnly" {
                return options.has("--dead-lettered-only") ? .bool(true) : nil
            }
            return self.filterFlags[field].flatMap { options[$0] }.map { .string($0) }
        }
        switch parsed {
        case .failure(let failure):
            let problems = failure.issues.map { "\(self.filterFlags[$0.field] ?? "--" + $0.field) \($0.message)" }
            throw UsageError(problems.joined(separator: "; "))
        case .success(let filter) where filter.isEmpty && required:
            throw UsageError("a replay needs at least one of \(self.filterFlags.values.sorted().joined(separator: ", ")) or --dead-lettered-only")
        case .success(let filter):
            return filter
        }
    }
}

/// Prints a replay's progress: a bar redrawn in place on a terminal, a plain line every two seconds otherwise.
final class ReplayProgressPrinter: Sendable {
    private let output: @Sendable (String) -> Void
    private let isTerminal = isatty(STDOUT_FILENO) == 1
    private let lastLineAtMs = Locked<Int64>(0)
    /// Whether a progress bar is on the terminal's current line, which the next plain line must end first.
    private let isBarShown = Locked<Bool>(false)

    init(output: @escaping @Sendable (String) -> Void) {
        self.output = output
    }

    /// Returns "1 delivery" or "N deliveries".
    static func deliveries(_ count: Int) -> String {
        count == 1 ? "1 delivery" : "\(count) deliveries"
    }

    /// Returns "1 delivery matches" or "N deliveries match".
    static func matching(_ count: Int) -> String {
        self.deliveries(count) + (count == 1 ? " matches" : " match")
    }

    func update(queued: Int, delivered: Int, deadLettered: Int, withdrawn: Int, final: Bool) {
        let settled = delivered + deadLettered + withdrawn
        // "0/0 settled" would read as a job that did nothing and finished; the lines printed after this one
        // give the reason nothing was queued.
        let counts = final && queued == 0
            ? "no deliveries queued"
            : "\(settled)/\(queued) settled: \(delivered) delivered, \(deadLettered) dead-lettered, \(withdrawn) withdrawn"
        if self.isTerminal {
            let width = 30
            let filled = queued == 0 ? width : min(width, settled * width / queued)
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            FileHandle.standardOutput.write(Data("\r[\(bar)] \(counts)\(final ? "\n" : "")".utf8))
            self.isBarShown.withLock { $0 = !final }
            return
        }
        let now = WallClock.milliseconds()
        let due = self.lastLineAtMs.withLock { last -> Bool in
            guard final || now - last >= 2000 else { return false }
            last = now
            return true
        }
        if due {
            self.output(counts)
        }
    }

    func line(_ text: String) {
        if self.isBarShown.withLock({ shown in defer { shown = false }; return shown }) {
            FileHandle.standardOutput.write(Data("\n".utf8))
        }
        self.output(text)
    }
}

/// A replay through the admin API of a running relay.
struct OnlineReplay {
    let adminURL: String
    let token: String?
    let filter: DeliveryFilter
    let dryRun: Bool
    /// How long the command follows the job before it leaves it running on the relay; nil follows it to the end.
    let waitSeconds: Double?
    let progress: ReplayProgressPrinter

    func run() throws -> Int32 {
        // Before the client's thread starts, so that it inherits the blocked SIGINT. A dry run creates no job.
        let interrupt = self.dryRun ? nil : InterruptWatch()
        defer { interrupt?.stop() }
        let client = HTTPClient(name: "replay-client")
        defer { client.shutdown() }
        var body = self.filter.jsonValue.objectValue ?? JSONObject()
        if self.dryRun {
            body["dryRun"] = true
        }
        // Once the request is sent the relay may create the job, so a Ctrl-C from then on cancels it instead of
        // leaving it to run unseen.
        interrupt?.onInterrupt { [progress] count in
            if count > 1 { InterruptWatch.exitInterrupted() }
            progress.line("interrupted: the replay is cancelled once the relay has created it; Ctrl-C again exits at once")
        }
        let created: JSONObject
        do {
            created = try self.call(client, "POST", "/admin/replays", body: JSONWriter.encode(.object(body)))
        } catch where (interrupt?.count ?? 0) > 0 {
            self.progress.line(
                "interrupted, and the request to create the replay failed (\(error)); the relay may still create "
                    + "it, and GET /admin/replays would list it")
            InterruptWatch.exitInterrupted()
        }
        if self.dryRun {
            let count = Int(created["count"]?.numberValue ?? 0)
            let sample = (created["sample"]?.arrayValue ?? []).compactMap(\.objectValue)
            self.progress.line(ReplayProgressPrinter.matching(count))
            for match in sample {
                self.progress.line(JSONWriter.encodeString(.object(match)))
            }
            if count > 0 {
                // A sample that contains every match names exactly the destinations the replay would send to.
                let targeted = count <= sample.count
                    ? Set(sample.compactMap { match in
                        match["tenant"]?.stringValue.flatMap { tenant in
                            match["destination"]?.stringValue.map { tenant + "/" + $0 }
                        }
                    })
                    : nil
                self.warnAboutHeldDestinations(client, among: targeted)
            }
            return 0
        }
        guard let id = created["id"]?.stringValue else { throw CommandError("the relay returned no replay id") }
        interrupt?.onInterrupt { [progress] count in
            if count > 1 {
                progress.line(
                    "exiting before the relay confirmed the cancellation: replay \(id) may still run; "
                        + "GET /admin/replays/\(id) shows it, and DELETE /admin/replays/\(id) cancels it")
                InterruptWatch.exitInterrupted()
            }
            // Sent from another queue, because the watch runs one action at a time on its own queue, and a second
            // Ctrl-C must exit at once even before the relay has responded.
            DispatchQueue.global().async {
                self.progress.line("cancelling replay \(id); Ctrl-C again exits at once")
                do {
                    _ = try self.call(client, "DELETE", "/admin/replays/\(id)")
                } catch {
                    self.progress.line(
                        "replay \(id) not cancelled: \(error); it goes on in the relay, and "
                            + "DELETE /admin/replays/\(id) cancels it")
                }
                InterruptWatch.exitInterrupted()
            }
        }
        if (interrupt?.count ?? 0) > 0 {
            // A Ctrl-C during the create request has started the cancellation, which ends the process.
            DispatchSemaphore(value: 0).wait()
        }
        self.progress.line("replay \(id) started; Ctrl-C cancels it")
        self.warnAboutHeldDestinations(client, among: nil)
        return try self.follow(id, client: client)
    }

    /// Polls the job until it ends or `waitSeconds` have passed, showing its progress, and returns the exit status.
    private func follow(_ id: String, client: HTTPClient) throws -> Int32 {
        let deadline = self.waitSeconds.map { DispatchTime.now() + $0 }
        while true {
            let job: JSONObject
            do {
                job = try self.call(client, "GET", "/admin/replays/\(id)", timeoutMs: Self.pollTimeoutMs(until: deadline))
            } catch let error as CommandError where deadline.map({ DispatchTime.now() >= $0 }) == true {
                // A relay that stops responding must not hold the command past --wait either.
                self.progress.line("replay \(id): \(error.description)")
                return self.leaveRunning(id, status: "unknown")
            }
            let status = job["status"]?.stringValue ?? ""
            let finished = ["completed", "cancelled", "failed"].contains(status)
            func count(_ name: String) -> Int { Int(job[name]?.numberValue ?? 0) }
            if status != "scanning" || finished {
                self.progress.update(
                    queued: count("queued"), delivered: count("delivered"), deadLettered: count("deadLettered"),
                    withdrawn: count("withdrawn"), final: finished)
            }
            if finished {
                if count("queued") == 0 && count("alreadyPending") == 0 && count("notConfigured") == 0 {
                    self.progress.line("no delivery matched the filter")
                }
                if count("alreadyPending") > 0 {
                    self.progress.line(
                        "\(ReplayProgressPrinter.deliveries(count("alreadyPending"))) left out: the same event was still pending for the destination")
                }
                if count("notConfigured") > 0 {
                    self.progress.line(
                        "\(ReplayProgressPrinter.deliveries(count("notConfigured"))) left out: the destination is not configured")
                }
                if let error = job["error"]?.stringValue {
                    self.progress.line("replay \(id) \(status): \(error)")
                } else {
                    self.progress.line("replay \(id) \(status)")
                }
                let isClean = count("deadLettered") == 0 && count("notConfigured") == 0
                return status == "completed" && isClean ? 0 : 1
            }
            if let deadline, DispatchTime.now() >= deadline {
                return self.leaveRunning(id, status: status)
            }
            Thread.sleep(forTimeInterval: 0.5)
        }
    }

    /// Stops following job `id` at the end of --wait without cancelling it, as one started through the admin API
    /// would go on, and returns exit status 1.
    private func leaveRunning(_ id: String, status: String) -> Int32 {
        self.progress.line(
            "replay \(id) is still \(status) after the --wait time; it goes on in the relay, and "
                + "GET /admin/replays/\(id) shows its progress")
        return 1
    }

    /// Returns the timeout of one poll: the admin client's usual 10 s, or less, so that a poll ends by `deadline`.
    private static func pollTimeoutMs(until deadline: DispatchTime?) -> Int {
        guard let deadline else { return 10_000 }
        let now = DispatchTime.now().uptimeNanoseconds
        let remainingMs = deadline.uptimeNanoseconds > now ? Int((deadline.uptimeNanoseconds - now) / 1_000_000) : 0
        // libcurl needs some time to connect and read even from a loopback listener that responds at once.
        return min(10_000, max(200, remainingMs))
    }

    /// Says which destinations of the filter are paused or disabled, since their deliveries wait until resumed.
    /// With `targeted`, `tenant/destination` keys, it names only those among them.
    private func warnAboutHeldDestinations(_ client: HTTPClient, among targeted: Set<String>?) {
        guard let list = try? self.call(client, "GET", "/admin/destinations") else { return }
        for destination in list["data"]?.arrayValue?.compactMap(\.objectValue) ?? [] {
            guard let tenant = destination["tenant"]?.stringValue, let id = destination["id"]?.stringValue,
                let mode = destination["mode"]?.stringValue, mode != "active",
                self.filter.tenant == nil || self.filter.tenant == tenant,
                self.filter.destination == nil || self.filter.destination == id,
                targeted?.contains(tenant + "/" + id) ?? true
            else { continue }
            self.progress.line(
                "destination \(tenant)/\(id) is \(mode); its deliveries wait until it is resumed "
                    + "(POST /admin/destinations/\(tenant)/\(id)/resume)")
        }
    }

    /// Sends one admin request and returns its JSON object, or throws with the relay's error message.
    private func call(
        _ client: HTTPClient, _ method: String, _ path: String, body: [UInt8] = [], timeoutMs: Int = 10_000
    ) throws -> JSONObject {
        var headers: [(name: String, value: String)] = [("Content-Type", "application/json")]
        if let token = self.token {
            headers.append(("Authorization", "Bearer \(token)"))
        }
        let result = Locked<Result<HTTPClient.Response, HTTPClient.TransportError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let request = HTTPClient.Request(
            method: method, url: self.adminURL + path, headers: headers, body: body, timeoutMs: timeoutMs)
        client.send(request) { outcome in
            result.withLock { $0 = outcome }
            done.signal()
        }
        done.wait()
        switch result.withLock({ $0 })! {
        case .failure(let error):
            throw CommandError("cannot reach the admin listener at \(self.adminURL): \(error.description); is the relay running? Use --offline if it is not")
        case .success(let response):
            let object = (try? JSONParser.parse(response.body))?.objectValue
            guard (200..<300).contains(response.status), let object else {
                let message = object?["message"]?.stringValue ?? "status \(response.status)"
                let details = (object?["details"]?.arrayValue ?? []).compactMap { detail -> String? in
                    guard let field = detail.objectValue?["field"]?.stringValue,
                        let text = detail.objectValue?["message"]?.stringValue
                    else { return nil }
                    return "\(field) \(text)"
                }
                var text = message
                if !details.isEmpty {
                    text = (message.hasSuffix(".") ? String(message.dropLast()) : message) + ": "
                        + details.joined(separator: "; ") + "."
                }
                if let hint = object?["hint"]?.stringValue {
                    text += (text.hasSuffix(".") ? " " : ". ") + hint
                }
                throw CommandError(text)
            }
            return object
        }
    }
}
