import Foundation
import Dispatch
import PortoutJournal
import PortoutCore
import PortoutTestSupport
import Synchronization
import Testing

@testable import PortoutRelay

/// Configuration reload, in process and by SIGHUP, and graceful shutdown by SIGTERM under load.
@Suite(.serialized)
struct ReloadAndShutdownTests {
    static let secondSecret = "whsec_c2Vjb25kLXRlbmFudC1pbmJvdW5kLXNlY3JldA=="

    static func tenant(_ id: String, secret: String = RelayHarness.inboundSecret, destinations: String = "[]") -> String {
        """
        {"id": "\(id)", "projects": ["acme-mobile"], "verify": {"secrets": ["\(secret)"]}, "destinations": \(destinations)}
        """
    }

    static func destination(_ id: String, url: String) -> String {
        """
        {"id": "\(id)", "url": "\(url)/\(id)", "secret": "\(RelayHarness.outboundSecret)", "retrySchedule": [0.2],
         "jitter": 0, "maxAttempts": 100}
        """
    }

    @Test func reloadSwapsDestinationsAndKeepsRemovedPending() throws {
        let failing = Atomic<Bool>(true)
        let first = try RecordingSink { _, _ in .init(status: failing.load(ordering: .relaxed) ? 503 : 204) }
        defer { first.shutdown() }
        let second = try RecordingSink()
        defer { second.shutdown() }
        let harness = try RelayHarness(
            tenantsJSON: "[\(Self.tenant("t1", destinations: "[\(Self.destination("d1", url: first.url))]"))]")
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_x", status: "initiated")).status == 202)
        #expect(waitUntil { first.received.count >= 2 })
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.retries ?? 0 >= 1 })
        let retriesBefore = try #require(harness.relay!.deliveryStatistics().first?.retries)

        let swapped = try harness.config(
            tenantsJSON: "[\(Self.tenant("t1", destinations: "[\(Self.destination("d2", url: second.url))]"))]")
        let report = harness.relay!.reload(swapped)
        #expect(report.destinations.added == ["t1/d2"])
        #expect(report.destinations.removed == ["t1/d1"])
        #expect(report.destinations.pendingOfRemoved["t1/d1"] == 1)
        #expect(report.needsRestart.isEmpty)
        #expect(harness.relay!.deliveryStatistics().map(\.destination) == ["d2"])
        let listed = try Self.unconfiguredDestinations(harness)
        #expect(listed.count == 1)
        #expect(listed.first?["id"]?.stringValue == "d1")
        #expect(listed.first?["cause"]?.stringValue == "removedByReload")
        #expect(listed.first?["queueDepth"]?.numberValue == 1)
        let metrics = String(decoding: try ReplayTests.admin(harness, "GET", "/metrics").body, as: UTF8.self)
        #expect(metrics.contains(#"portout_delivery_unconfigured_queue_depth{tenant="t1",destination="d1"} 1"#))

        #expect(try harness.post(Events.portOut("pout_y", status: "initiated")).status == 202)
        #expect(waitUntil { second.received.count == 1 })
        #expect(second.received.first?.portOut == "pout_y")
        let firstCount = first.received.count
        Thread.sleep(forTimeInterval: 0.6)
        // A detached destination gets no new attempts, for its held delivery or for new events.
        #expect(first.received.count == firstCount)

        failing.store(false, ordering: .relaxed)
        let both = try harness.config(
            tenantsJSON: """
                [\(Self.tenant("t1", destinations: "[\(Self.destination("d1", url: first.url)), \(Self.destination("d2", url: second.url))]"))]
                """)
        let restored = harness.relay!.reload(both)
        #expect(restored.destinations.added == ["t1/d1"])
        #expect(waitUntil { harness.relay!.deliveryStatistics().first { $0.destination == "d1" }?.delivered == 1 })
        #expect(first.received.last?.portOut == "pout_x")
        // Its counts since start carry on from before the removal.
        #expect(harness.relay!.deliveryStatistics().first { $0.destination == "d1" }?.retries ?? 0 >= retriesBefore)
        #expect(try Self.unconfiguredDestinations(harness).isEmpty)
    }

    static func unconfiguredDestinations(_ harness: RelayHarness) throws -> [JSONObject] {
        let response = try ReplayTests.admin(harness, "GET", "/admin/unconfigured-destinations")
        #expect(response.status == 200)
        return try ReplayTests.json(response)["data"]?.arrayValue?.compactMap(\.objectValue) ?? []
    }

    /// Deliveries found unsettled at start for a destination the configuration no longer names wait in the engine,
    /// so a reload that names it again sends them ahead of the port out's later statuses.
    @Test func reloadSendsDeliveriesHeldSinceStart() throws {
        let failing = Atomic<Bool>(true)
        let sink = try RecordingSink { _, _ in .init(status: failing.load(ordering: .relaxed) ? 503 : 204) }
        defer { sink.shutdown() }
        let withDestination = "[\(Self.tenant("t1", destinations: "[\(Self.destination("d1", url: sink.url))]"))]"
        let first = try RelayHarness(tenantsJSON: withDestination)
        #expect(try first.post(Events.portOut("pout_x", status: "initiated")).status == 202)
        #expect(waitUntil { sink.received.count >= 1 })
        first.stop()

        // The stop publishes what it leaves held, for the stop line, with no report asked for before it.
        let idle = try RelayHarness(tenantsJSON: "[\(Self.tenant("t1"))]", directory: first.directory)
        let engine = idle.relay!.engine
        idle.stop()
        #expect(engine.unconfiguredStatistics().map(\.pending) == [1])

        let harness = try RelayHarness(tenantsJSON: "[\(Self.tenant("t1"))]", directory: first.directory)
        defer { harness.finish() }
        let listed = try Self.unconfiguredDestinations(harness)
        #expect(listed.map { $0["cause"]?.stringValue } == ["notConfiguredSinceStart"])
        #expect(listed.first?["queueDepth"]?.numberValue == 1)
        #expect(listed.first?["oldestPendingAgeSeconds"]?.numberValue != nil)
        failing.store(false, ordering: .relaxed)
        let failedAttempts = sink.received.count
        let restored = harness.relay!.reload(try harness.config(tenantsJSON: withDestination))
        #expect(restored.destinations.added == ["t1/d1"])
        #expect(try harness.post(Events.portOut("pout_x", status: "processing")).status == 202)
        #expect(waitUntil { sink.received.filter { $0.status == "processing" }.count == 1 })
        #expect(sink.received.dropFirst(failedAttempts).map { $0.status ?? "" } == ["initiated", "processing"])
    }

    /// A start logs one warning with the count for each dropped destination that has unsettled deliveries, and
    /// none for configured ones. Its "state rebuilt" line counts the held deliveries apart, as the stop line does.
    @Test func startLogsHeldDeliveriesPerDestination() throws {
        let sink = try RecordingSink { _, _ in .init(status: 503) }
        defer { sink.shutdown() }
        let destinations = ["d1", "d2", "d3"].map { Self.destination($0, url: sink.url) }.joined(separator: ", ")
        let first = try RelayHarness(tenantsJSON: "[\(Self.tenant("t1", destinations: "[\(destinations)]"))]")
        for (index, status) in ["initiated", "processing"].enumerated() {
            #expect(try first.post(Events.portOut("pout_\(index)", status: status)).status == 202)
        }
        first.stop()
        defer { first.directory.remove() }

        let lines = Locked<[[UInt8]]>([])
        let logger = Logger(level: .info, sink: LogSink { line in lines.withLock { $0.append(line) } })
        let onlyD2 = "[\(Self.tenant("t1", destinations: "[\(Self.destination("d2", url: sink.url))]"))]"
        let relay = try Relay(config: try first.config(tenantsJSON: onlyD2), logger: logger)
        relay.shutdown(graceSeconds: 0)
        let warnings = lines.withLock { $0 }.compactMap { line -> JSONObject? in
            guard let object = try? JSONParser.parse(line).objectValue,
                object["msg"]?.stringValue == "unsettled deliveries for a destination that is not configured"
            else { return nil }
            return object
        }
        #expect(warnings.map { $0["destination"]?.stringValue } == ["t1/d1", "t1/d3"])
        #expect(warnings.map { $0["pending"]?.numberValue } == [2, 2])
        let rebuilt = lines.withLock { $0 }.compactMap { try? JSONParser.parse($0).objectValue }
            .first { $0["msg"]?.stringValue == "state rebuilt" }
        #expect(rebuilt?["unsettledDeliveries"]?.numberValue == 2)
        #expect(rebuilt?["unconfiguredDeliveries"]?.numberValue == 4)
    }

    @Test func reloadKeepsRestartOnlySettings() throws {
        let harness = try RelayHarness(tenantsJSON: "[\(Self.tenant("t1"))]")
        defer { harness.finish() }
        let port = harness.port
        let changed = try harness.config(
            tenantsJSON: "[\(Self.tenant("t1")), \(Self.tenant("t2", secret: Self.secondSecret))]",
            extra: #""limits": {"maxConnections": 10}, "dedupe": {"capacity": 10}, "shutdownGraceSeconds": 3"#)
        let report = harness.relay!.reload(changed)
        #expect(report.tenantsAdded == ["t2"])
        #expect(report.needsRestart == ["limits", "dedupe"])
        #expect(report.settingsChanged == ["shutdownGraceSeconds"])
        #expect(report.tenantsChanged.isEmpty)
        #expect(harness.relay!.config.limits.maxConnections == 4096)
        #expect(harness.relay!.config.dedupe.capacity == 1_000_000)
        #expect(harness.relay!.config.shutdownGraceSeconds == 3)
        #expect(harness.port == port)
        let body = Events.portOut("pout_t2", status: "initiated")
        #expect(try harness.post(body, tenant: "t2", secret: Self.secondSecret).status == 202)
    }

    @Test func shutdownGivesInFlightDeliveriesGrace() throws {
        let sink = try RecordingSink { _, _ in .init(status: 204, delaySeconds: 0.8) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(
            tenantsJSON: "[\(Self.tenant("t1", destinations: "[\(Self.destination("d1", url: sink.url))]"))]")
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_grace", status: "initiated")).status == 202)
        #expect(waitUntil { sink.received.count == 1 })
        // The attempt is in flight; with a grace period its success is journaled before the relay stops.
        harness.stop(graceSeconds: 5)
        try harness.start()
        Thread.sleep(forTimeInterval: 1)
        #expect(sink.received.count == 1)
        #expect(harness.relay!.deliveryStatistics().first?.pending == 0)
    }

    @Test func shutdownWithoutGraceAbandonsInFlight() throws {
        let sink = try RecordingSink { _, _ in .init(status: 204, delaySeconds: 0.8) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(
            tenantsJSON: "[\(Self.tenant("t1", destinations: "[\(Self.destination("d1", url: sink.url))]"))]")
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_cut", status: "initiated")).status == 202)
        #expect(waitUntil { sink.received.count == 1 })
        harness.stop(graceSeconds: 0)
        try harness.start()
        // The abandoned attempt was not journaled, so the restarted relay makes it again.
        #expect(waitUntil { sink.received.count == 2 })
        #expect(sink.received.map { $0.headers["webhook-id"] } == ["evt_pout_cut_initiated", "evt_pout_cut_initiated"])
    }

    // MARK: Signals to a relay process

    static func writeConfig(
        _ path: String, directory: TemporaryDirectory, tenants: String, extra: String = "",
        listen: String = "127.0.0.1:0"
    ) throws {
        let text = """
            {"listen": "\(listen)", "dataDir": "\(directory.path)/data", "logLevel": "info",
             "admin": {"listen": "127.0.0.1:0"}, "shutdownGraceSeconds": 5,
             \(extra.isEmpty ? "" : extra + ",") "tenants": \(tenants)}
            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    static func post(port: Int, tenant: String, body: [UInt8], secret: String = RelayHarness.inboundSecret) -> Int? {
        guard let client = try? LoopbackClient(port: port) else { return nil }
        let headers = [("Content-Type", "application/json")]
            + RelayHarness.standardWebhooksHeaders(body, secret: secret, id: "msg_signal")
        return client.request("POST", "/webhooks/\(tenant)", headers: headers, body: body)?.status
    }

    /// A start that fails once the configuration is read, here on a port that a sink already listens on, logs
    /// one line like the others and exits with status 1.
    @Test func failedStartLogsLine() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let configPath = directory.file("config.json")
        let port = try #require(URL(string: sink.url)?.port)
        try Self.writeConfig(
            configPath, directory: directory, tenants: "[\(Self.tenant("t1"))]", listen: "127.0.0.1:\(port)")
        let relay = try RelayProcess(configPath: configPath, logPath: directory.file("relay.log"), waitForStart: false)
        defer { relay.kill() }
        #expect(relay.waitForExit(timeoutSeconds: 20) == 1)
        let lines = relay.logLines("relay not started")
        #expect(lines.count == 1)
        #expect(lines.first?["error"]?.stringValue?.contains("Address already in use") == true)
    }

    @Test func sighupReloadsValidAndRejectsInvalid() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let configPath = directory.file("config.json")
        try Self.writeConfig(configPath, directory: directory, tenants: "[\(Self.tenant("t1"))]")
        let relay = try RelayProcess(configPath: configPath, logPath: directory.file("relay.log"))
        defer { relay.kill() }
        let body = Events.portOut("pout_h", status: "initiated")
        #expect(Self.post(port: relay.port, tenant: "t2", body: body, secret: Self.secondSecret) == 404)

        try Self.writeConfig(
            configPath, directory: directory, tenants: "[\(Self.tenant("t1")), \(Self.tenant("t2", secret: Self.secondSecret))]")
        relay.signal(SIGHUP)
        #expect(waitUntil { !relay.logLines("configuration reloaded").isEmpty })
        #expect(relay.logLines("configuration reloaded").first?["tenantsAdded"] == ["t2"])
        #expect(Self.post(port: relay.port, tenant: "t2", body: body, secret: Self.secondSecret) == 202)

        try Self.writeConfig(
            configPath, directory: directory, tenants: #"[{"id": "t1", "projects": ["p"], "verify": {"scheme": "rot13"}}]"#)
        relay.signal(SIGHUP)
        #expect(waitUntil { !relay.logLines("configuration reload rejected; the running configuration is unchanged").isEmpty })
        let rejection = relay.logLines("configuration reload rejected; the running configuration is unchanged").first
        let problems = rejection?["problems"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(problems.contains { $0.hasPrefix("$.tenants[0].verify.scheme:") })
        // Both tenants of the last valid file still work.
        #expect(Self.post(port: relay.port, tenant: "t1", body: Events.portOut("pout_h1", status: "initiated")) == 202)
        #expect(
            Self.post(port: relay.port, tenant: "t2", body: Events.portOut("pout_h2", status: "initiated"), secret: Self.secondSecret)
                == 202)

        relay.signal(SIGTERM)
        #expect(relay.waitForExit(timeoutSeconds: 20) == 0)
    }

    /// A SIGTERM that arrives while the journal is still being recovered stops the relay before it listens or
    /// delivers.
    @Test func sigtermDuringStartStops() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let configPath = directory.file("config.json")
        try Self.writeConfig(configPath, directory: directory, tenants: "[\(Self.tenant("t1"))]")
        // Enough records that recovery takes a while in a debug build.
        let journal = try Journal.open(
            directory: directory.path + "/data/journal", segmentBytes: 64 << 20, logger: Logger(level: .error)
        ) { _, _ in }
        let records = (0..<Self.slowRecoveryRecords).map { index in
            JournalRecord.attempt(AttemptRecord(
                eventSequence: UInt64(index + 1), tenant: "t1", destination: "d1", attempt: 1, outcome: .delivered,
                httpStatus: 204, atMs: 1, nextAttemptAtMs: nil, error: ""))
        }
        let written = DispatchSemaphore(value: 0)
        journal.appendAll(records) { _ in written.signal() }
        written.wait()
        journal.close()

        let relay = try RelayProcess(configPath: configPath, logPath: directory.file("relay.log"), waitForStart: false)
        defer { relay.kill() }
        // The lock file exists already, since the journal above created it. The relay takes the lock after it
        // has set up its signal handling and before it recovers, so the signal goes in between.
        let lockPath = directory.path + "/data/journal/journal.lock"
        #expect(waitUntil { Self.holdsFileLock(pid: relay.process.processIdentifier, path: lockPath) })
        let startedBeforeSignal = relay.started != nil
        relay.signal(SIGTERM)
        #expect(!startedBeforeSignal, "recovery finished before the signal, so this run does not test the start")
        #expect(relay.waitForExit(timeoutSeconds: 60) == 0)
        #expect(relay.logLines("shutdown requested").count == 1)
        #expect(relay.logLines("relay stopped").count == 1)
        #expect(relay.logLines("relay stopped").first?["started"] == false)
        #expect(relay.logLines("relay started").isEmpty)
    }

    /// A request left unfinished on the admin listener keeps the relay waiting for it during the grace period,
    /// but the webhook listener closes and deliveries stop starting as soon as the stop is requested.
    @Test func sigtermStopsListenersAndAttemptsAtOnce() throws {
        let sink = try RecordingSink { _, _ in .init(status: 204, delaySeconds: 2) }
        defer { sink.shutdown() }
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let configPath = directory.file("config.json")
        let destination = """
            {"id": "d1", "url": "\(sink.url)/d1", "secret": "\(RelayHarness.outboundSecret)", "concurrency": 1}
            """
        try Self.writeConfig(configPath, directory: directory, tenants: "[\(Self.tenant("t1", destinations: "[\(destination)]"))]")
        let relay = try RelayProcess(configPath: configPath, logPath: directory.file("relay.log"))
        defer { relay.kill() }
        let admin = try LoopbackClient(port: relay.adminPort)
        admin.send("GET /admin/destinations HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(admin.readResponse() != nil)
        admin.send("GET /admin/destinations HTTP/1.1\r\nHost: x\r\n")
        for index in 0..<3 {
            #expect(Self.post(port: relay.port, tenant: "t1", body: Events.portOut("pout_stop_\(index)", status: "initiated")) == 202)
        }
        // The first delivery is in flight for 2 s, and the admin loop has long read the unfinished head.
        #expect(waitUntil { sink.received.count == 1 })

        relay.signal(SIGTERM)
        #expect(waitUntil(timeoutSeconds: 3) { (try? LoopbackClient(port: relay.port)) == nil })
        #expect(relay.process.isRunning, "the relay did not wait for the unfinished admin request")
        #expect(relay.waitForExit(timeoutSeconds: 30) == 0)
        #expect(sink.received.count == 1)
        #expect(relay.logLines("relay stopped").first?["unsettledDeliveries"] == 2)
    }

    static let slowRecoveryRecords = 300_000

    /// The relay sends systemd READY=1 once it listens, and STOPPING=1 when a stop is requested, through a socket
    /// named by path or in the abstract namespace.
    @Test(arguments: ["path", "abstract"])
    func serviceManagerHearsReadyAndStopping(_ kind: String) throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let configPath = directory.file("config.json")
        try Self.writeConfig(configPath, directory: directory, tenants: "[\(Self.tenant("t1"))]")
        let name = kind == "path" ? directory.file("notify.sock") : "@portout-relay-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let socket = try NotifySocket(name: name)
        let relay = try RelayProcess(
            configPath: configPath, logPath: directory.file("relay.log"), environment: ["NOTIFY_SOCKET": name])
        defer { relay.kill() }
        let ready = socket.receive()
        #expect(ready?.hasPrefix("READY=1\n") == true, "\(ready ?? "nothing")")
        #expect(ready?.contains("STATUS=listening on 127.0.0.1:\(relay.port)") == true, "\(ready ?? "nothing")")

        relay.signal(SIGTERM)
        #expect(socket.receive() == "STOPPING=1")
        #expect(relay.waitForExit(timeoutSeconds: 20) == 0)
        #expect(relay.logLines("service manager notification failed").isEmpty)
    }

    /// A reload that hangs, here on a secret file replaced by a FIFO that no one writes, holds up a stop for the
    /// grace period at most.
    @Test func hungReloadDelaysStopByGraceAtMost() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let secretPath = directory.file("secret")
        try RelayHarness.inboundSecret.write(toFile: secretPath, atomically: true, encoding: .utf8)
        let configPath = directory.file("config.json")
        let tenant = #"{"id": "t1", "projects": ["acme-mobile"], "verify": {"secrets": [{"file": "\#(secretPath)"}]}}"#
        try Self.writeConfig(configPath, directory: directory, tenants: "[\(tenant)]")
        let relay = try RelayProcess(configPath: configPath, logPath: directory.file("relay.log"))
        defer { relay.kill() }
        try FileManager.default.removeItem(atPath: secretPath)
        #expect(mkfifo(secretPath, 0o600) == 0)
        relay.signal(SIGHUP)
        #expect(waitUntil { !relay.logLines("configuration reload requested").isEmpty })

        relay.signal(SIGTERM)
        #expect(relay.waitForExit(timeoutSeconds: 30) == 0)
        #expect(relay.logLines("configuration reload still under way at shutdown").count == 1)
        #expect(relay.logLines("relay stopped").count == 1)
    }

    /// A notification socket that is never read, with its queue full, holds up neither the start nor the stop:
    /// the relay logs that the notifications failed.
    @Test func fullNotifySocketBlocksNothing() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let configPath = directory.file("config.json")
        try Self.writeConfig(configPath, directory: directory, tenants: "[\(Self.tenant("t1"))]")
        let name = directory.file("notify.sock")
        let socket = try NotifySocket(name: name)
        #expect(socket.fill() > 0)
        let relay = try RelayProcess(
            configPath: configPath, logPath: directory.file("relay.log"), environment: ["NOTIFY_SOCKET": name])
        defer { relay.kill() }
        #expect(waitUntil { relay.logLines("service manager notification failed").count == 1 })

        relay.signal(SIGTERM)
        #expect(relay.waitForExit(timeoutSeconds: 20) == 0)
        let failures = relay.logLines("service manager notification failed")
        #expect(failures.map { $0["state"]?.stringValue } == ["READY=1\nSTATUS=listening on 127.0.0.1:\(relay.port)", "STOPPING=1"])
    }

    /// A datagram socket in place of systemd's notification socket.
    final class NotifySocket {
        let descriptor: Int32

        init(name: String) throws {
            self.descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            var bytes = Array(name.utf8)
            if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
            let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(self.descriptor, $0, length) }
            }
            guard bound == 0 else { throw SystemError(operation: "bind \(name)", errno: errno) }
            var timeout = timeval(tv_sec: 20, tv_usec: 0)
            setsockopt(self.descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        deinit {
            close(self.descriptor)
        }

        /// Sends datagrams to this socket until its queue is full, and returns how many it took.
        func fill() -> Int {
            let sender = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            defer { close(sender) }
            var address = sockaddr_un()
            var length = socklen_t(MemoryLayout<sockaddr_un>.size)
            let named = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(self.descriptor, $0, &length) }
            }
            guard named == 0 else { return 0 }
            let datagram = [UInt8](repeating: 0x78, count: 1024)
            var sent = 0
            while sent < 100_000 {
                let result = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(sender, datagram, datagram.count, Int32(MSG_DONTWAIT), $0, length)
                    }
                }
                guard result > 0 else { break }
                sent += 1
            }
            return sent
        }

        /// Returns the next datagram as text, or nil after 20 s without one.
        func receive() -> String? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(self.descriptor, &buffer, buffer.count, 0)
            return count < 0 ? nil : String(decoding: buffer[..<count], as: UTF8.self)
        }
    }

    /// A SIGTERM sent the moment the relay blocks it, before libdispatch can have set up the source that takes
    /// it, still stops the relay. Each start gives one chance at that moment, so the test takes several.
    @Test func sigtermAsSoonAsBlockedStops() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let configPath = directory.file("config.json")
        try Self.writeConfig(configPath, directory: directory, tenants: "[\(Self.tenant("t1"))]")
        for start in 0..<5 {
            let relay = try RelayProcess(
                configPath: configPath, logPath: directory.file("relay-\(start).log"), waitForStart: false)
            defer { relay.kill() }
            let pid = relay.process.processIdentifier
            let blocked = waitUntil(timeoutSeconds: 30, pollSeconds: 0.0002) {
                Self.blockedSignals(pid: pid).map { $0 & Self.signalBit(SIGTERM) != 0 } ?? false
            }
            #expect(blocked, "start \(start): the relay never blocked SIGTERM")
            relay.signal(SIGTERM)
            #expect(relay.waitForExit(timeoutSeconds: 30) == 0, "start \(start)")
            #expect(relay.logLines("shutdown requested").count == 1, "start \(start)")
        }
    }

    static func signalBit(_ number: Int32) -> UInt64 {
        1 << UInt64(number - 1)
    }

    /// The signals that process `pid`'s main thread blocks, from the `SigBlk` line of /proc/PID/status.
    static func blockedSignals(pid: Int32) -> UInt64? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        let line = status.split(separator: "\n").first { $0.hasPrefix("SigBlk:") }
        return line.flatMap { UInt64($0.dropFirst("SigBlk:".count).trimmingCharacters(in: .whitespaces), radix: 16) }
    }

    /// Returns whether process `pid` has a `flock` on the file at `path`, as /proc/locks lists it. Reading the
    /// list takes no lock, so the check cannot make the relay's own attempt to lock fail.
    static func holdsFileLock(pid: Int32, path: String) -> Bool {
        var status = stat()
        guard stat(path, &status) == 0, let locks = try? String(contentsOfFile: "/proc/locks", encoding: .utf8) else {
            return false
        }
        // Each line looks like "1: FLOCK  ADVISORY  WRITE 4242 fe:00:16245331 0 EOF": the pid, then the device in
        // hexadecimal and the inode in decimal.
        return locks.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            guard fields.count >= 6, fields[1] == "FLOCK", fields[4] == "\(pid)" else { return false }
            return fields[5].split(separator: ":").last == "\(status.st_ino)"
        }
    }

    @Test func sigtermUnderLoadLosesNothingAcknowledged() throws {
        let sink = try RecordingSink { _, _ in .init(status: 204, delaySeconds: 0.02) }
        defer { sink.shutdown() }
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let configPath = directory.file("config.json")
        try Self.writeConfig(
            configPath, directory: directory, tenants: "[\(Self.tenant("t1", destinations: "[\(Self.destination("d1", url: sink.url))]"))]")
        let relay = try RelayProcess(configPath: configPath, logPath: directory.file("relay.log"))
        defer { relay.kill() }
        let port = relay.port

        // Four senders post distinct events on fresh connections until the relay stops listening, at most 200
        // each. Every id that got a 2xx must reach the sink.
        let acknowledged = Locked<[String]>([])
        let senders = DispatchGroup()
        for sender in 0..<4 {
            DispatchQueue.global().async(group: senders) {
                for index in 0..<200 {
                    let eventID = "evt_load_\(sender)_\(index)"
                    let body = Events.portOut("pout_load_\(sender)_\(index)", status: "initiated", eventID: eventID)
                    guard let status = Self.post(port: port, tenant: "t1", body: body) else { return }
                    if (200..<300).contains(status) {
                        acknowledged.withLock { $0.append(eventID) }
                    }
                }
            }
        }
        #expect(waitUntil { acknowledged.withLock { $0.count } >= 100 })
        relay.signal(SIGTERM)
        senders.wait()
        #expect(relay.waitForExit(timeoutSeconds: 30) == 0)
        #expect(!relay.logLines("shutdown requested").isEmpty)
        #expect(!relay.logLines("relay stopped").isEmpty)

        let restarted = try RelayProcess(configPath: configPath, logPath: directory.file("relay-2.log"))
        defer { restarted.kill() }
        let expected = Set(acknowledged.withLock { $0 })
        #expect(expected.count >= 100)
        #expect(waitUntil(timeoutSeconds: 60) { expected.isSubset(of: Set(sink.received.compactMap { $0.headers["webhook-id"] })) })
        restarted.signal(SIGTERM)
        #expect(restarted.waitForExit(timeoutSeconds: 20) == 0)
    }
}
