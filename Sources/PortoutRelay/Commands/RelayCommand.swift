import Dispatch
import Foundation
import PortoutCore
import PortoutDelivery
import PortoutJournal

/// The `portout-relay` command line.
public enum RelayCommand {
    public static let usage = """
        usage: portout-relay <command> [options]

        commands:
          serve [--config FILE] [--log-level LEVEL]
                        run the relay (default config: ./config.json); SIGHUP reloads the file, SIGTERM and
                        SIGINT stop it after the configured shutdownGraceSeconds
          check-config [--config FILE]
                        validate a configuration file and list every problem
          journal verify --data-dir DIR
                        check every journal frame; exit status 1 if any segment is damaged
          journal dump --data-dir DIR [--bodies] [--dead-letters]
                        print one JSON line per record; --dead-letters lists only deliveries that gave up
          journal deliveries --data-dir DIR [replay's filter flags but --dead-lettered-only] [--limit N]
                             [--starting-after ID]
                        print one JSON line per delivery, oldest event first, with each attempt and replay of it
                        (at most N, default 1000)
          journal stats --data-dir DIR [--retention-seconds N]
                        print totals for the journal as one JSON line, with what retention would remove now
                        (--retention-seconds, or journal.retentionSeconds from --config); each journal command
                        takes --config FILE in place of --data-dir and reads dataDir from it
          replay [--config FILE] [--admin-url URL] [--tenant ID] [--destination ID] [--port-out ID]
                 [--event ID] [--status S[,S...]] [--type TYPE] [--from TIME] [--to TIME] [--dead-lettered-only]
                 [--dry-run] [--wait SECONDS]
                        replay matching deliveries through the running relay's admin listener (address and token
                        from the config) and show progress until the job ends, or for at most SECONDS, after
                        which the job goes on in the relay; TIME is RFC 3339, such as 2026-11-02T09:00:00Z
          replay --offline [--config FILE] [--data-dir DIR] [--wait SECONDS] [filters as above]
                        replay straight from the journal while the relay is stopped, waiting up to SECONDS
                        (default 300) for the deliveries to settle
          emulate [--listen HOST:PORT] [--projects ID[:uk],...] [--api-keys KEY[:credentials],...]
                  [--webhook-urls URL,...] [--webhook-secret SECRET] [--webhook-scheme SCHEME]
                  [--webhook-header NAME] [--processing-after S] [--issued-after S]
                  [--retry-rate P] [--resend-rate P] [--reorder-rate P] [--port-outs N] [--rate R]
                  [--finish-after S] [--seed N] [--log-level LEVEL]
                        run a carrier that serves the Port Out API and sends signed webhooks; with --port-outs it
                        creates N port outs at R a second and drives each to a terminal status
          openapi       print the OpenAPI document of the HTTP API
          version       print the version
        """

    /// Runs the command and returns the process exit status.
    public static func run(_ arguments: [String]) -> Int32 {
        let words = Array(arguments.dropFirst())
        if words.count > 1 && words.dropFirst().contains(where: { $0 == "--help" || $0 == "-h" }) {
            print(self.usage)
            return 0
        }
        do {
            switch words.first {
            case "serve":
                return try self.serve(words.dropFirst())
            case "check-config":
                return try self.checkConfig(words.dropFirst())
            case "journal":
                return try self.journal(words.dropFirst())
            case "emulate":
                return try self.emulate(words.dropFirst())
            case "replay":
                // Written unbuffered, so progress lines go out as they are made, also into a pipe or a file.
                return try ReplayCommand.run(words.dropFirst()) { FileHandle.standardOutput.write(Data(($0 + "\n").utf8)) }
            case "openapi":
                print(OpenAPIDocument.text)
                return 0
            case "version", "--version":
                print("portout-relay \(RelayVersion.current)")
                return 0
            case "help", "--help", "-h":
                print(self.usage)
                return 0
            case nil:
                self.printError(self.usage)
                return 2
            case let other?:
                throw UsageError("unknown command \(other)")
            }
        } catch let error as UsageError {
            self.printError("portout-relay: \(error.description)\nRun portout-relay --help for the commands and their options.")
            return 2
        } catch let error as CommandError {
            self.printError("portout-relay: \(error.description)")
            return 1
        } catch let error as ConfigError {
            self.printError(error.description)
            return 1
        } catch {
            self.printError("portout-relay: \(error)")
            return 1
        }
    }

    /// Makes a write past a file size limit (`ulimit -f`, LimitFSIZE) fail with EFBIG, which the journal reports
    /// like a full disk, instead of ending the process with no log line. Only the commands that write the journal
    /// do this: one that prints into a file would otherwise stop at the limit without an error.
    static func ignoreFileSizeSignal() {
        signal(SIGXFSZ, SIG_IGN)
    }

    private static func serve(_ arguments: ArraySlice<String>) throws -> Int32 {
        // Dispatch sources take these, so that shutdown and reload run as ordinary code instead of in a handler.
        // Blocked first, so that a stop or reload sent while the configuration is read waits as pending too.
        blockSignals([SIGTERM, SIGINT, SIGHUP])
        let options = try CommandArguments(arguments, valueOptions: ["--config", "--log-level"])
        let path = options["--config"] ?? "config.json"
        var levelOverride: LogLevel?
        if let levelName = options["--log-level"] {
            guard let level = LogLevel(rawValue: levelName) else {
                throw UsageError("--log-level must be one of \(LogLevel.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            levelOverride = level
        }
        var config = try RelayConfig.load(path: path)
        config.logLevel = levelOverride ?? config.logLevel
        let logger = Logger(level: config.logLevel)
        self.fitConnectionsToFileLimit(&config, logger: logger)
        signal(SIGPIPE, SIG_IGN)
        self.ignoreFileSizeSignal()
        // Watched before the relay starts, so that a stop requested during a long journal recovery takes effect
        // as soon as the start finishes.
        let termination = TerminationSignals(logger: logger)
        defer { termination.cancel() }
        let relay: Relay
        do {
            relay = try Relay(config: config, logger: logger) { termination.isRequested }
        } catch is Relay.StopRequestedDuringStart {
            logger.info("relay stopped", ["started": false, "reason": "the stop was requested before the relay listened"])
            return 0
        } catch {
            // A log line like the others, for a service manager's log, rather than plain text on standard error.
            logger.error("relay not started", ["error": .string(String(describing: error))])
            return 1
        }
        let reloadQueue = DispatchQueue(label: "reload")
        let reloadSource = DispatchSource.makeSignalSource(signal: SIGHUP, queue: reloadQueue)
        reloadSource.setEventHandler {
            guard !termination.isRequested else {
                return logger.info("configuration reload skipped", ["reason": "the relay is stopping"])
            }
            self.reload(relay, path: path, levelOverride: levelOverride, logger: logger)
        }
        reloadSource.resume()
        let notifier = ServiceNotifier(environment: ProcessInfo.processInfo.environment)
        if !termination.isRequested {
            self.notify(notifier, "READY=1\nSTATUS=listening on \(relay.config.listen.host):\(relay.port)", logger: logger)
        }
        termination.wait()
        self.notify(notifier, "STOPPING=1", logger: logger)
        reloadSource.cancel()
        self.waitForReload(on: reloadQueue, seconds: relay.config.shutdownGraceSeconds, logger: logger)
        relay.shutdown()
        // Kept to the end of the process: with a million deliveries pending, freeing them took 2.6 s after the
        // "relay stopped" line, which a service manager would wait out for nothing.
        _ = Unmanaged.passRetained(relay)
        return 0
    }

    /// Waits until a reload already under way on `queue` has ended, for `seconds` at most, since a reload can hang,
    /// for example on a secret file that is a FIFO. The empty block runs after the reload on the same queue.
    private static func waitForReload(on queue: DispatchQueue, seconds: Int, logger: Logger) {
        let reloadsDone = DispatchSemaphore(value: 0)
        queue.async { reloadsDone.signal() }
        if reloadsDone.wait(timeout: .now() + .seconds(seconds)) == .timedOut {
            logger.warning(
                "configuration reload still under way at shutdown",
                ["effect": "the relay stops without waiting for it", "seconds": .number(Double(seconds))])
        }
    }

    /// Tells systemd about the relay's state, for a unit of `Type=notify`, which counts the relay as started only
    /// once it listens, and so delays a reload or a dependent unit until then.
    private static func notify(_ notifier: ServiceNotifier, _ state: String, logger: Logger) {
        do {
            try notifier.send(state)
        } catch {
            logger.warning(
                "service manager notification failed",
                ["socket": .string(notifier.socketPath ?? ""), "state": .string(state), "error": .string(error.description),
                 "effect": "systemd may time the start out, or not see the stop until the process exits"])
        }
    }

    /// Descriptors kept free of client connections for the journal, outbound connections and libdispatch, which
    /// stops the process when it cannot get one.
    static let reservedDescriptors = 512

    /// Raises the open-file limit, and lowers `maxConnections` and `maxConnectionsPerClient` if the limit would
    /// not leave room for the rest. A reload fits its limits the same way, silently, so that they compare equal.
    private static func fitConnectionsToFileLimit(_ config: inout RelayConfig, logger: Logger?) {
        let limit = OpenFileLimit.raiseToHardLimit()
        let fitted = config.limits.fitted(openFileLimit: limit, reservedDescriptors: self.reservedDescriptors)
        guard fitted != config.limits else { return }
        logger?.warning(
            "maxConnections lowered to fit the open-file limit",
            ["configured": .number(Double(config.limits.maxConnections)), "lowered": .number(Double(fitted.maxConnections)),
             "maxConnectionsPerClient": .number(Double(fitted.maxConnectionsPerClient)),
             "openFileLimit": .number(Double(limit)),
             "action": "raise LimitNOFILE (systemd) or ulimit -n to allow the configured value"])
        config.limits = fitted
    }

    /// Re-reads the configuration file on SIGHUP. An invalid file changes nothing, and every problem is logged.
    private static func reload(_ relay: Relay, path: String, levelOverride: LogLevel?, logger: Logger) {
        logger.info("configuration reload requested", ["path": .string(path)])
        do {
            var config = try RelayConfig.load(path: path)
            config.logLevel = levelOverride ?? config.logLevel
            self.fitConnectionsToFileLimit(&config, logger: nil)
            relay.reload(config)
        } catch {
            logger.error(
                "configuration reload rejected; the running configuration is unchanged",
                ["path": .string(path), "problems": .array(error.problems.map { .string($0.description) })])
        }
    }

    private static func emulate(_ arguments: ArraySlice<String>) throws -> Int32 {
        blockSignals([SIGTERM, SIGINT])
        let options = try CommandArguments(
            arguments,
            valueOptions: [
                "--listen", "--projects", "--api-keys", "--webhook-urls", "--webhook-secret", "--processing-after",
                "--issued-after", "--retry-rate", "--resend-rate", "--reorder-rate", "--port-outs", "--rate",
                "--finish-after", "--seed", "--log-level", "--webhook-scheme", "--webhook-header",
            ])
        var settings = EmulatorSettings()
        if let listen = options["--listen"] {
            guard let address = ListenAddress(parsing: listen) else { throw UsageError("--listen must be HOST:PORT") }
            settings.listen = address
        }
        if let projects = options["--projects"] {
            guard let parsed = EmulatorSettings.parseProjects(projects) else {
                throw UsageError("--projects must be a comma-separated list of NAME or NAME:uk")
            }
            settings.projects = parsed
        }
        if let keys = options["--api-keys"] {
            guard let parsed = EmulatorSettings.parseAPIKeys(keys) else {
                throw UsageError("--api-keys must be a comma-separated list of KEY or KEY:credentials")
            }
            settings.apiKeys = parsed
        }
        if let urls = options["--webhook-urls"] {
            settings.webhookURLs = urls.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            for url in settings.webhookURLs {
                let host = url.split(separator: "/", omittingEmptySubsequences: false).dropFirst(2).first ?? ""
                guard url.hasPrefix("http://") || url.hasPrefix("https://"), !host.isEmpty else {
                    throw UsageError("--webhook-urls entries must be http:// or https:// URLs with a host, not \"\(url)\"")
                }
            }
        }
        settings.webhookSecret = options["--webhook-secret"] ?? ""
        if let scheme = options["--webhook-scheme"] {
            guard let parsed = SignatureScheme(rawValue: scheme) else {
                throw UsageError("--webhook-scheme must be standard-webhooks, timestamped-hex or hex")
            }
            settings.webhookScheme = parsed
        }
        settings.webhookSignatureHeader = options["--webhook-header"] ?? settings.webhookSignatureHeader
        let secret = Secret(value: settings.webhookSecret, source: "flag")
        if !settings.webhookURLs.isEmpty && settings.webhookScheme == .standardWebhooks && !secret.isStandardWebhooksSecret {
            throw UsageError("--webhook-secret must be a whsec_ secret for standard-webhooks when --webhook-urls is given")
        }
        if !settings.webhookURLs.isEmpty && settings.webhookSecret.isEmpty {
            throw UsageError("--webhook-secret is required when --webhook-urls is given")
        }
        func number(_ name: String, _ range: ClosedRange<Double>) throws -> Double? {
            guard let text = options[name] else { return nil }
            guard let value = Double(text), range.contains(value) else {
                throw UsageError("\(name) must be a number from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        settings.processingAfterSeconds = try number("--processing-after", 0...86_400) ?? settings.processingAfterSeconds
        settings.issuedAfterSeconds = try number("--issued-after", 0...86_400) ?? settings.issuedAfterSeconds
        settings.finishAfterSeconds = try number("--finish-after", 0...86_400) ?? settings.finishAfterSeconds
        guard settings.issuedAfterSeconds >= settings.processingAfterSeconds else {
            throw UsageError("--issued-after counts from creation too, so it must not be less than --processing-after")
        }
        settings.retryRate = try number("--retry-rate", 0...1) ?? 0
        settings.resendRate = try number("--resend-rate", 0...1) ?? 0
        settings.reorderRate = try number("--reorder-rate", 0...1) ?? 0
        settings.rate = try number("--rate", 0.001...100_000) ?? settings.rate
        settings.generatedPortOuts = Int(try number("--port-outs", 0...10_000_000) ?? 0)
        settings.seed = options["--seed"].flatMap { UInt64($0) }
        let level = LogLevel(rawValue: options["--log-level"] ?? "info") ?? .info
        signal(SIGPIPE, SIG_IGN)
        let termination = TerminationSignals(logger: Logger(level: level))
        defer { termination.cancel() }
        let emulator = CarrierEmulator(settings: settings, logger: Logger(level: level))
        try emulator.start()
        termination.wait()
        emulator.shutdown()
        return 0
    }

    /// SIGTERM and SIGINT, taken by dispatch sources, so the caller must have blocked both before starting any
    /// thread. `wait` returns once either has arrived, at once if one came before it was called.
    private final class TerminationSignals {
        private let stop = DispatchSemaphore(value: 0)
        private let requested = Locked(false)
        private var sources: [DispatchSourceSignal] = []

        init(logger: Logger) {
            let signalQueue = DispatchQueue(label: "signals")
            let isRequested = self.requested
            for number in [SIGTERM, SIGINT] {
                let source = DispatchSource.makeSignalSource(signal: number, queue: signalQueue)
                source.setEventHandler { [stop] in
                    let name = JSONValue.string(number == SIGTERM ? "SIGTERM" : "SIGINT")
                    let isFirst = isRequested.withLock { requested in
                        defer { requested = true }
                        return !requested
                    }
                    guard isFirst else {
                        return logger.info("shutdown already under way", ["signal": name])
                    }
                    logger.info("shutdown requested", ["signal": name])
                    stop.signal()
                }
                source.resume()
                self.sources.append(source)
            }
        }

        /// Whether either signal has arrived.
        var isRequested: Bool {
            self.requested.withLock { $0 }
        }

        func wait() {
            self.stop.wait()
        }

        func cancel() {
            self.sources.forEach { $0.cancel() }
        }
    }

    private static func checkConfig(_ arguments: ArraySlice<String>) throws -> Int32 {
        let options = try CommandArguments(arguments, valueOptions: ["--config"])
        let path = options["--config"] ?? "config.json"
        let config = try RelayConfig.load(path: path)
        let destinations = config.tenants.reduce(0) { $0 + $1.destinations.count }
        let tenants = config.tenants.count
        print(
            "\(path): valid; \(tenants) \(tenants == 1 ? "tenant" : "tenants"), \(destinations) "
                + "\(destinations == 1 ? "destination" : "destinations"), listening on \(config.listen)")
        return 0
    }

    private static func journal(_ arguments: ArraySlice<String>) throws -> Int32 {
        guard let action = arguments.first else { throw UsageError("journal needs verify, dump, stats or deliveries") }
        let options = action == "deliveries"
            ? try CommandArguments(
                arguments.dropFirst(),
                valueOptions: ReplayCommand.filterValueOptions.union(
                    ["--data-dir", "--config", "--limit", "--starting-after"]))
            : try CommandArguments(
                arguments.dropFirst(), valueOptions: ["--data-dir", "--config", "--retention-seconds"],
                flagOptions: ["--bodies", "--dead-letters"])
        let config = try options["--config"].map { try RelayConfig.load(path: $0) }
        guard let dataDirectory = options["--data-dir"] ?? config?.dataDir else {
            throw UsageError("journal \(action) needs --data-dir or --config")
        }
        let output: (String) -> Void = { print($0) }
        switch action {
        case "verify":
            return try JournalCommands.verify(dataDirectory: dataDirectory, output: output) ? 0 : 1
        case "dump":
            let damage = try JournalCommands.dump(
                dataDirectory: dataDirectory, bodies: options.has("--bodies"),
                deadLettersOnly: options.has("--dead-letters"), output: output)
            return self.reportDamage(damage)
        case "stats":
            var retention = config?.journal.retentionSeconds
            if let text = options["--retention-seconds"] {
                guard let seconds = Int(text), (60...(10 * 365 * 86_400)).contains(seconds) else {
                    throw UsageError("--retention-seconds must be a whole number of seconds from 60 to 315360000 (ten years)")
                }
                retention = seconds
            }
            return self.reportDamage(
                try JournalCommands.stats(dataDirectory: dataDirectory, retentionSeconds: retention, output: output))
        case "deliveries":
            return try self.listDeliveries(options, dataDirectory: dataDirectory, output: output)
        default:
            throw UsageError("unknown journal command \(action)")
        }
    }

    /// `journal deliveries`: one JSON line per delivery the filter flags take, with its steps, as
    /// `GET /admin/deliveries` lists them, for when the relay is not running.
    private static func listDeliveries(
        _ options: CommandArguments, dataDirectory: String, output: (String) -> Void
    ) throws -> Int32 {
        let filter = try ReplayCommand.filter(options, required: false)
        var limit = 1000
        if let text = options["--limit"] {
            guard let value = Int(text), (1...ReplayScan.maxDeliveries).contains(value) else {
                throw UsageError("--limit must be a whole number from 1 to \(ReplayScan.maxDeliveries)")
            }
            limit = value
        }
        let prefix = DeliveryHistory.Delivery.idPrefix
        let after = try options["--starting-after"].map { text in
            guard let key = DeliveryKey(id: text, prefix: prefix) else {
                throw UsageError("--starting-after must be a delivery id such as \(prefix)42_billing")
            }
            return key
        }
        switch DeliveryHistory.page(dataDirectory: dataDirectory, filter: filter, after: after, limit: limit) {
        case .failure(let failure):
            throw CommandError(failure.description)
        case .success(let page):
            for delivery in page.deliveries {
                output(JSONWriter.encodeString(delivery.jsonValue))
            }
            if page.hasMore, let last = page.deliveries.last {
                self.printError("portout-relay: more deliveries match; continue with --starting-after \(last.id)")
            }
            return self.reportDamage(page.damage)
        }
    }

    /// Prints each damaged segment to standard error; exit status 1 if there was any.
    private static func reportDamage(_ damage: [JournalCommands.SegmentDamage]) -> Int32 {
        for line in damage {
            self.printError("portout-relay: journal damaged: \(line); run journal verify")
        }
        return damage.isEmpty ? 0 : 1
    }

    private static func printError(_ text: String) {
        StandardError.write((text + "\n"))
    }
}
