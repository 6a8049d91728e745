import Foundation
import PortoutCore
import PortoutCrypto
import PortoutDelivery
import PortoutTestSupport
import Synchronization
import Testing

@testable import PortoutRelay

/// The admin listener: authentication, metrics, and destination pause, resume, breaker, 410 and rate limit.
@Suite(.serialized)
struct AdminTests {
    static let token = "admin-token-for-tests-0001"
    static let tokenConfig = #""admin": {"listen": "127.0.0.1:0", "token": "\#(token)"}"#

    static func destination(_ url: String, extra: String = "") -> String {
        DeliveryTests.destination(url, retrySchedule: "[0.3]", maxAttempts: 50, extra: extra)
    }

    static func admin(
        _ harness: RelayHarness, _ method: String, _ path: String, token: String? = AdminTests.token, body: String = ""
    ) throws -> LoopbackClient.Response {
        let client = try LoopbackClient(port: harness.adminPort)
        var headers: [(String, String)] = []
        if let token {
            headers.append(("Authorization", "Bearer \(token)"))
        }
        if !body.isEmpty {
            headers.append(("Content-Type", "application/json"))
        }
        return try #require(client.request(method, path, headers: headers, body: Array(body.utf8)))
    }

    static func metricsLines(_ harness: RelayHarness, token: String? = AdminTests.token) throws -> Set<String> {
        let page = try Self.admin(harness, "GET", "/metrics", token: token)
        return Set(String(decoding: page.body, as: UTF8.self).split(separator: "\n").map(String.init))
    }

    static func destinationState(_ harness: RelayHarness, tenant: String = "t1", id: String = "d1") throws -> JSONObject {
        try #require(try Self.admin(harness, "GET", "/admin/destinations/\(tenant)/\(id)").json?.objectValue)
    }

    @Test func adminRequiresItsToken() throws {
        let harness = try RelayHarness(extra: Self.tokenConfig)
        defer { harness.finish() }
        let missing = try Self.admin(harness, "GET", "/metrics", token: nil)
        #expect(missing.status == 401)
        #expect(missing.json?.objectValue?["code"]?.stringValue == "adminTokenMissing")
        let wrong = try Self.admin(harness, "GET", "/admin/destinations", token: "wrong-token-wrong-token")
        #expect(wrong.status == 401)
        #expect(wrong.json?.objectValue?["code"]?.stringValue == "adminTokenInvalid")
        #expect(try Self.admin(harness, "GET", "/no/such/path", token: nil).status == 401)
        #expect(try Self.admin(harness, "GET", "/metrics").status == 200)
        #expect(try Self.admin(harness, "GET", "/no/such/path").status == 404)
        let wrongMethod = try Self.admin(harness, "DELETE", "/admin/destinations")
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.header("Allow") == "GET, HEAD")
        // The webhook listener serves no admin paths.
        #expect(try harness.client().request("GET", "/metrics")?.status == 404)
    }

    @Test func metricsPassPromtool() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url), extra: Self.tokenConfig)
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_m", status: "initiated")).status == 202)
        #expect(try harness.post(Events.portOut("pout_m", status: "initiated")).status == 200)
        #expect(try harness.post(Events.portOut("pout_m", status: "issued")).status == 202)
        #expect(try harness.post(Events.portOut("pout_m", status: "issued"), secret: "whsec_d3Jvbmc=").status == 401)
        // Processing after issued is stale: journaled and counted, not delivered.
        #expect(try harness.post(Events.portOut("pout_m", status: "processing")).status == 202)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.delivered == 2 })

        let response = try Self.admin(harness, "GET", "/metrics")
        #expect(response.status == 200)
        #expect(response.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        let text = String(decoding: response.body, as: UTF8.self)
        let lines = Set(text.split(separator: "\n").map(String.init))
        #expect(lines.contains(#"portout_webhook_requests_total{tenant="t1",outcome="accepted"} 3"#))
        #expect(lines.contains(#"portout_webhook_requests_total{tenant="t1",outcome="duplicate"} 1"#))
        #expect(lines.contains(#"portout_webhook_requests_total{tenant="t1",outcome="signatureFailed"} 1"#))
        #expect(lines.contains(#"portout_signature_failures_total{tenant="t1"} 1"#))
        #expect(lines.contains(#"portout_stale_events_total{tenant="t1"} 1"#))
        #expect(lines.contains(
            #"portout_delivery_attempts_total{tenant="t1",destination="d1",outcome="delivered",status_class="2xx"} 2"#))
        #expect(lines.contains(#"portout_delivery_queue_depth{tenant="t1",destination="d1"} 0"#))
        #expect(lines.contains(#"portout_http_buffer_full_rejections_total{limit="clientShare"} 0"#))
        #expect(lines.contains(#"portout_destination_mode{tenant="t1",destination="d1",mode="active"} 1"#))
        #expect(lines.contains(#"portout_delivery_duration_seconds_count{tenant="t1",destination="d1"} 2"#))
        let syncCount = lines.first { $0.hasPrefix("portout_journal_fsync_seconds_count ") }
        #expect(syncCount != nil)
        #expect(syncCount?.hasSuffix(" 0") == false)
        #expect(lines.contains { $0.hasPrefix("portout_journal_bytes ") })
        #expect(lines.contains(#"portout_http_connection_rejections_total{limit="maxConnectionsPerClient"} 0"#))
        #expect(lines.contains("portout_journal_write_in_progress_seconds 0"))
        #expect(lines.contains(#"portout_destination_mode_changed_timestamp_seconds{tenant="t1",destination="d1"} 0"#))

        let directory = harness.directory
        let page = directory.file("metrics.txt")
        try text.write(toFile: page, atomically: true, encoding: .utf8)
        let promtool = try #require(Self.promtool(), "promtool is missing; make test fetches it into .build/tools")
        let (status, output) = runProgramCapturingOutput(promtool, ["check", "metrics"], inputPath: page)
        #expect(status == 0, "promtool check metrics: \(output)")
    }

    static func promtool() -> String? {
        let bundled = CarrierFeedTests.repositoryRoot + "/.build/tools/promtool"
        if FileManager.default.isExecutableFile(atPath: bundled) {
            return bundled
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        return path.split(separator: ":").map { "\($0)/promtool" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test func pauseHoldsDeliveriesAcrossRestartAndResumeSendsThemInOrder() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url), extra: Self.tokenConfig)
        defer { harness.finish() }
        let paused = try Self.admin(harness, "POST", "/admin/destinations/t1/d1/pause", body: #"{"reason": "billing upgrade"}"#)
        #expect(paused.status == 200)
        #expect(paused.json?.objectValue?["mode"] == "paused")
        #expect(paused.json?.objectValue?["modeReason"] == "billing upgrade")
        // A repeated pause without a reason keeps the operator's; one with a reason replaces it.
        let repeated = try Self.admin(harness, "POST", "/admin/destinations/t1/d1/pause")
        #expect(repeated.json?.objectValue?["modeReason"] == "billing upgrade")
        let blank = try Self.admin(harness, "POST", "/admin/destinations/t1/d1/pause", body: #"{"reason": " "}"#)
        #expect(blank.json?.objectValue?["modeReason"] == "billing upgrade")
        let replaced = try Self.admin(harness, "POST", "/admin/destinations/t1/d1/pause", body: #"{"reason": "upgrade, day 2"}"#)
        #expect(replaced.json?.objectValue?["modeReason"] == "upgrade, day 2")
        for status in ["initiated", "processing", "issued"] {
            #expect(try harness.post(Events.portOut("pout_p", status: status)).status == 202)
        }
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.isEmpty)
        #expect(try Self.destinationState(harness)["queueDepth"] == 3)

        let changed = try #require(Self.metricsLines(harness).first {
            $0.hasPrefix(#"portout_destination_mode_changed_timestamp_seconds{tenant="t1",destination="d1"} "#)
        })
        let changedSeconds = try #require(Double(changed.split(separator: " ").last ?? ""))
        #expect(abs(changedSeconds - Date().timeIntervalSince1970) < 60, "\(changed)")

        try harness.restart()
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.isEmpty)
        let restored = try Self.destinationState(harness)
        #expect(restored["mode"] == "paused")
        // The time of the pause comes back from destinations.json, so alerts on a long pause survive restarts.
        #expect(try Self.metricsLines(harness).contains(changed))
        #expect(restored["queueDepth"] == 3)
        #expect((restored["oldestPendingAgeSeconds"]?.numberValue ?? -1) >= 0)

        let resumed = try Self.admin(harness, "POST", "/admin/destinations/t1/d1/resume")
        #expect(resumed.status == 200)
        #expect(resumed.json?.objectValue?["mode"] == "active")
        #expect(waitUntil { sink.received.count == 3 })
        #expect(sink.received.map(\.status) == ["initiated", "processing", "issued"])
    }

    /// A resume sends the retries waiting after a restart at once, instead of at the backoff's next time, here
    /// 10 minutes away.
    @Test func resumeSendsDeliveriesWaitingForRetry() throws {
        let failing = Atomic<Bool>(true)
        let sink = try RecordingSink { _, _ in .init(status: failing.load(ordering: .relaxed) ? 503 : 204) }
        defer { sink.shutdown() }
        let destination = DeliveryTests.destination(sink.url, retrySchedule: "[600]", maxAttempts: 5)
        let harness = try RelayHarness(destinations: destination, extra: Self.tokenConfig)
        defer { harness.finish() }
        for status in ["initiated", "processing"] {
            #expect(try harness.post(Events.portOut("pout_r", status: status)).status == 202)
        }
        #expect(try harness.post(Events.portOut("pout_s", status: "initiated")).status == 202)
        #expect(waitUntil { sink.received.count == 2 })
        try harness.restart()
        failing.store(false, ordering: .relaxed)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.count == 2)
        #expect(try Self.destinationState(harness)["queueDepth"] == 3)

        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/resume").status == 200)
        #expect(waitUntil { sink.received.count == 5 })
        let retried = sink.received.dropFirst(2)
        #expect(retried.filter { $0.portOut == "pout_r" }.map(\.status) == ["initiated", "processing"])
        #expect(retried.filter { $0.portOut == "pout_s" }.map(\.status) == ["initiated"])
        #expect(waitUntil { (try? Self.destinationState(harness)["queueDepth"]) == 0 })
    }

    @Test func pauseOfUnknownDestinationIsNotFound() throws {
        let harness = try RelayHarness(extra: Self.tokenConfig)
        defer { harness.finish() }
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/nope/pause").status == 404)
        #expect(try Self.admin(harness, "GET", "/admin/destinations/t9/d1").status == 404)
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/nope/pause", body: "[1]").status == 400)
    }

    @Test func heldModeSurvivesRestartWithoutDestination() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url))
        defer { harness.finish() }
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/pause", token: nil).status == 200)
        harness.stop()
        // A start without d1 keeps its saved mode, and a reload that configures d1 again applies it.
        let relay = try Self.startWithoutDestinationThenReload(harness)
        defer { relay.shutdown(graceSeconds: 0) }
        #expect(relay.deliveryStatistics().first?.mode == .paused)
    }

    /// A damaged destinations.json hides which destinations were held, so a start pauses every destination,
    /// keeps the damaged file under another name, and sends nothing until a resume.
    @Test func unreadableModesPauseEveryDestination() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url), extra: Self.tokenConfig)
        defer { harness.finish() }
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/pause").status == 200)
        #expect(try harness.post(Events.portOut("pout_u", status: "initiated")).status == 202)
        harness.stop()
        let dataDirectory = harness.directory.path + "/data"
        let damaged = Array(#"{"destinations":[{"tenant":"t1","destination":"d1","mode":"paused""#.utf8)
        try Data(damaged).write(to: URL(fileURLWithPath: dataDirectory + "/destinations.json"))

        try harness.start()
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.isEmpty)
        let state = try Self.destinationState(harness)
        #expect(state["mode"] == "paused")
        #expect(state["modeReason"]?.stringValue?.hasPrefix("destinations.json could not be read") == true)
        let names = try FileManager.default.contentsOfDirectory(atPath: dataDirectory)
        let aside = try #require(names.first { $0.hasPrefix("destinations.json.unreadable-") })
        #expect(try Data(contentsOf: URL(fileURLWithPath: dataDirectory + "/" + aside)) == Data(damaged))

        let unknownModeLine = #"portout_destination_mode_unknown{tenant="t1",destination="d1"} "#
        #expect(try Self.metricsLines(harness).contains(unknownModeLine + "1"))

        // The pause was saved, so a second start keeps it without another unreadable file, and the mode still
        // counts as unknown.
        try harness.restart()
        #expect(try Self.destinationState(harness)["mode"] == "paused")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dataDirectory).filter { $0.contains(".unreadable-") }.count == 1)
        #expect(try Self.metricsLines(harness).contains(unknownModeLine + "1"))
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/resume").status == 200)
        #expect(waitUntil { sink.received.count == 1 })
        #expect(try Self.metricsLines(harness).contains(unknownModeLine + "0"))
    }

    /// A start that cannot save the pauses after an unreadable destinations.json leaves the unreadable file in
    /// place, so the next start pauses every destination again instead of finding no saved modes.
    @Test func unsavedPausesLeaveUnreadableFile() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url))
        defer { harness.finish() }
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/pause", token: nil).status == 200)
        #expect(try harness.post(Events.portOut("pout_s", status: "initiated")).status == 202)
        harness.stop()
        let path = harness.directory.path + "/data/destinations.json"
        try "garbage".write(toFile: path, atomically: true, encoding: .utf8)
        // A directory where the save writes its temporary file makes that save fail.
        try FileManager.default.createDirectory(atPath: path + ".tmp", withIntermediateDirectories: false)

        try harness.start()
        #expect(harness.relay!.deliveryStatistics().first?.mode == .paused)
        harness.stop()
        try FileManager.default.removeItem(atPath: path + ".tmp")
        #expect((try? String(contentsOfFile: path, encoding: .utf8)) == "garbage")

        try harness.start()
        #expect(harness.relay!.deliveryStatistics().first?.mode == .paused)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.count == 0)
    }

    /// A destination held while it was not configured, with nothing waiting for it, is lost from the file that
    /// an unreadable start saves. The file records that the modes are unknown, so a later start that configures
    /// the destination again pauses it.
    @Test func unknownModesOutlastTheStartThatFoundThem() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let destinations = """
            [{"id": "d1", "url": "\(sink.url)/d1", "secret": "\(RelayHarness.outboundSecret)"},
             {"id": "d2", "url": "\(sink.url)/d2", "secret": "\(RelayHarness.outboundSecret)"}]
            """
        let harness = try RelayHarness(destinations: destinations)
        defer { harness.finish() }
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d2/pause", token: nil).status == 200)
        harness.stop()
        let onlyFirst = try harness.config(
            tenantsJSON: RelayHarness.tenantsJSON(destinations: Self.destination(sink.url)))
        try Relay(config: onlyFirst, logger: Logger(level: .error)).shutdown(graceSeconds: 0)
        let path = harness.directory.path + "/data/destinations.json"
        try "garbage".write(toFile: path, atomically: true, encoding: .utf8)
        try Relay(config: onlyFirst, logger: Logger(level: .error)).shutdown(graceSeconds: 0)

        try harness.start()
        let modes = Dictionary(uniqueKeysWithValues: harness.relay!.deliveryStatistics().map { ($0.destination, $0) })
        #expect(modes["d1"]?.mode == .paused)
        #expect(modes["d2"]?.mode == .paused)
        #expect(modes["d2"]?.modeReason.hasPrefix("destinations.json could not be read") == true)
        #expect(try harness.post(Events.portOut("pout_k", status: "initiated")).status == 202)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.count == 0)

        // The pause of d2 was saved at the start that made it, so it outlasts unknownModes removed by hand.
        harness.stop()
        let url = URL(fileURLWithPath: path)
        var document = try #require(try JSONParser.parse(Array(Data(contentsOf: url))).objectValue)
        let unknownModes = try #require(document["unknownModes"])
        document["unknownModes"] = nil
        try Data(JSONWriter.encode(.object(document))).write(to: url)
        try harness.start()
        let withoutRecord = Dictionary(
            uniqueKeysWithValues: harness.relay!.deliveryStatistics().map { ($0.destination, $0.mode) })
        #expect(withoutRecord == ["d1": .paused, "d2": .paused])
        harness.stop()
        document["unknownModes"] = unknownModes
        try Data(JSONWriter.encode(.object(document))).write(to: url)
        try harness.start()

        // A resumed destination is saved as active, so it is not paused again at the next start.
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/resume", token: nil).status == 200)
        #expect(waitUntil { sink.received.count == 1 })
        try harness.restart()
        let restarted = Dictionary(
            uniqueKeysWithValues: harness.relay!.deliveryStatistics().map { ($0.destination, $0.mode) })
        #expect(restarted == ["d1": .active, "d2": .paused])
    }

    /// A 410's disable whose save failed outlasts a restart: saved at the stop once the disk takes it again, or,
    /// when even that save fails, rebuilt from the journaled attempt at the next start. After a resume and a
    /// delivery it is not rebuilt again, and a pause whose save failed is saved when the operator sends it again.
    @Test(arguments: [true, false])
    func failedModeSaveIsNotLost(diskBackBeforeStop: Bool) throws {
        // Only the first attempt gets 410, so that the resume below delivers instead of disabling and saving again
        // while the test makes the next save fail.
        let sink = try RecordingSink { index, _ in .init(status: index == 0 ? 410 : 204) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url))
        defer { harness.finish() }
        let path = harness.directory.path + "/data/destinations.json"
        // A directory where the save writes its temporary file makes the save fail.
        try FileManager.default.createDirectory(atPath: path + ".tmp", withIntermediateDirectories: false)
        #expect(try harness.post(Events.portOut("pout_f", status: "initiated")).status == 202)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.mode == .disabled })
        if diskBackBeforeStop {
            try FileManager.default.removeItem(atPath: path + ".tmp")
            harness.stop()
        } else {
            harness.stop()
            try FileManager.default.removeItem(atPath: path + ".tmp")
            #expect(!FileManager.default.fileExists(atPath: path))
        }
        try harness.start()
        #expect(harness.relay!.deliveryStatistics().first?.mode == .disabled)
        #expect(try DeliveryEngine.savedModes(controlFile: path, configured: ["t1/d1"])["t1/d1"] == .disabled)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.count == 1)

        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/resume", token: nil).status == 200)
        // The resume is saved with its time, which is what keeps a later start from disabling it again.
        #expect(try DeliveryEngine.savedModes(controlFile: path, configured: ["t1/d1"])["t1/d1"] == .active)
        #expect(waitUntil { sink.received.count == 2 })
        try harness.restart()
        #expect(harness.relay!.deliveryStatistics().first?.mode == .active)

        try FileManager.default.createDirectory(atPath: path + ".tmp", withIntermediateDirectories: false)
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/pause", token: nil).status == 500)
        try FileManager.default.removeItem(atPath: path + ".tmp")
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/pause", token: nil).status == 200)
        #expect(try DeliveryEngine.savedModes(controlFile: path, configured: ["t1/d1"])["t1/d1"] == .paused)
    }

    /// An attempt that was in flight at a 410 and ends after it with another status is no resume. So the disable
    /// that was never saved is rebuilt at a start, and at a reload that adds the destination after a start without it.
    @Test(arguments: [true, false])
    func unsavedDisableRebuiltDespiteLaterAttempt(configuredAtStart: Bool) throws {
        // Two attempts go out together: the first to arrive ends after the second's 410.
        let sink = try RecordingSink { index, _ in
            .init(status: index == 0 ? 204 : 410, delaySeconds: index == 0 ? 1 : 0.1)
        }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url, extra: #""concurrency": 2"#))
        defer { harness.finish() }
        let path = harness.directory.path + "/data/destinations.json"
        try FileManager.default.createDirectory(atPath: path + ".tmp", withIntermediateDirectories: false)
        #expect(try harness.post(Events.portOut("pout_l1", status: "initiated")).status == 202)
        #expect(try harness.post(Events.portOut("pout_l2", status: "initiated")).status == 202)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.delivered == 1 })
        #expect(harness.relay!.deliveryStatistics().first?.mode == .disabled)
        harness.stop()
        try FileManager.default.removeItem(atPath: path + ".tmp")

        let relay: Relay
        if configuredAtStart {
            relay = try Relay(config: try harness.config, logger: Logger(level: .error))
        } else {
            let without = try harness.config(tenantsJSON: RelayHarness.tenantsJSON())
            relay = try Relay(config: without, logger: Logger(level: .error))
            _ = relay.reload(try harness.config)
        }
        defer { relay.shutdown(graceSeconds: 0) }
        #expect(relay.deliveryStatistics().first?.mode == .disabled)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.count == 2)
    }

    /// A 410 from a destination paused before it, whose disable was never saved, disables it at the next start.
    /// A file from a version that saved held destinations only shows no resume, so its unnamed destinations are
    /// taken as resumed after any 410 before the start. Nor does it give the time of a pause it names, which is
    /// taken as after the 410, since a paused destination sends nothing, and counts from the start.
    @Test(arguments: ["pausedBefore", "notNamedInOlderFile", "pausedInOlderFile"])
    func journaled410AgainstSavedFile(file kind: String) throws {
        let sink = try RecordingSink { _, _ in .init(status: 410) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url))
        defer { harness.finish() }
        let path = harness.directory.path + "/data/destinations.json"
        try FileManager.default.createDirectory(atPath: path + ".tmp", withIntermediateDirectories: false)
        #expect(try harness.post(Events.portOut("pout_p", status: "initiated")).status == 202)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.mode == .disabled })
        harness.stop()
        try FileManager.default.removeItem(atPath: path + ".tmp")
        let paused = #"{"tenant": "t1", "destination": "d1", "mode": "paused", "reason": "r", "changedAtMs": 1}"#
        let pausedWithoutTime = #"{"tenant": "t1", "destination": "d1", "mode": "paused", "reason": "r"}"#
        let files = [
            "pausedBefore": #"{"version": 2, "destinations": [\#(paused)]}"#,
            "notNamedInOlderFile": #"{"destinations": []}"#,
            "pausedInOlderFile": #"{"destinations": [\#(pausedWithoutTime)]}"#,
        ]
        try #require(files[kind]).write(toFile: path, atomically: true, encoding: .utf8)

        let startedAtMs = WallClock.milliseconds()
        try harness.start()
        let expected: [String: DestinationMode] = [
            "pausedBefore": .disabled, "notNamedInOlderFile": .active, "pausedInOlderFile": .paused,
        ]
        #expect(harness.relay!.deliveryStatistics().first?.mode == expected[kind])
        if kind == "pausedInOlderFile" {
            let changed = try #require(Self.metricsLines(harness, token: nil).first {
                $0.hasPrefix(#"portout_destination_mode_changed_timestamp_seconds{tenant="t1",destination="d1"} "#)
            })
            let changedSeconds = try #require(Double(changed.split(separator: " ").last ?? ""))
            #expect(changedSeconds >= Double(startedAtMs) / 1000, "\(changed)")
        }
        // The start saves the file in the version that names every destination, with their times.
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains(#""version":2"#))
    }

    /// After a failed save, the next save that succeeds logs that the modes are saved, whatever change made it.
    @Test func saveAfterFailureIsLogged() throws {
        let harness = try RelayHarness(destinations: Self.destination("http://127.0.0.1:9"))
        defer { harness.finish() }
        harness.stop()
        let lines = Locked<[String]>([])
        let sink = LogSink { bytes in lines.withLock { $0.append(String(decoding: bytes, as: UTF8.self)) } }
        let relay = try Relay(config: try harness.config, logger: Logger(level: .info, sink: sink))
        defer { relay.shutdown(graceSeconds: 0) }
        let path = harness.directory.path + "/data/destinations.json"
        let pause = { (reason: String) -> Bool in
            let done = DispatchSemaphore(value: 0)
            let saved = Locked(false)
            relay.engine.setMode(tenant: "t1", destination: "d1", mode: .paused, reason: reason) { result in
                saved.withLock { $0 = (try? result.get()) != nil }
                done.signal()
            }
            done.wait()
            return saved.withLock { $0 }
        }
        try FileManager.default.createDirectory(atPath: path + ".tmp", withIntermediateDirectories: false)
        #expect(!pause("first"))
        try FileManager.default.removeItem(atPath: path + ".tmp")
        #expect(pause("second"))
        #expect(lines.withLock { $0 }.contains { $0.contains(#""msg":"destination modes saved""#) })
    }

    /// A destination left out of the configuration at a start that could not read the saved modes may have been
    /// held too, with deliveries waiting for it or none, so a reload that configures it again pauses it. The pause
    /// is saved, so it outlasts a restart with the destination configured from the start.
    @Test(arguments: [true, false])
    func unreadableModesPauseDestinationAddedLater(deliveryWaiting: Bool) throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url))
        defer { harness.finish() }
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/pause", token: nil).status == 200)
        if deliveryWaiting {
            #expect(try harness.post(Events.portOut("pout_h", status: "initiated")).status == 202)
        }
        harness.stop()
        let path = harness.directory.path + "/data/destinations.json"
        try "garbage".write(toFile: path, atomically: true, encoding: .utf8)

        let relay = try Self.startWithoutDestinationThenReload(harness)
        let statistics = relay.deliveryStatistics().first
        #expect(statistics?.mode == .paused)
        #expect(statistics?.modeReason.hasPrefix("destinations.json could not be read") == true)
        relay.shutdown(graceSeconds: 0)

        try harness.start()
        #expect(harness.relay!.deliveryStatistics().first?.mode == .paused)
        let unknownModeLine = #"portout_destination_mode_unknown{tenant="t1",destination="d1"} 1"#
        #expect(try Self.metricsLines(harness, token: nil).contains(unknownModeLine))
        #expect(try harness.post(Events.portOut("pout_a", status: "initiated")).status == 202)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.count == 0)
    }

    /// Two Authorization headers get 401 even when one is right, since a proxy in front may have checked the
    /// other.
    @Test func repeatedAuthorizationIsRejected() throws {
        let harness = try RelayHarness(extra: Self.tokenConfig)
        defer { harness.finish() }
        let client = try LoopbackClient(port: harness.adminPort)
        for tokens in [[Self.token, "wrong-token-wrong-token"], ["wrong-token-wrong-token", Self.token], [Self.token, Self.token]] {
            let response = try #require(client.request("GET", "/admin/destinations", headers: tokens.map { ("Authorization", "Bearer \($0)") }))
            #expect(response.status == 401, "\(tokens)")
        }
        let single = try #require(client.request("GET", "/admin/destinations", headers: [("Authorization", "Bearer \(Self.token)")]))
        #expect(single.status == 200)
    }

    /// Starts a relay on the stopped `harness`'s data with tenant t1 but no destination, then reloads the
    /// harness's configuration, which has d1; the caller shuts the relay down.
    static func startWithoutDestinationThenReload(_ harness: RelayHarness) throws -> Relay {
        let without = try harness.config(tenantsJSON: #"[{"id": "t1", "projects": ["acme-mobile"], "verify": {"secrets": ["\#(RelayHarness.inboundSecret)"]}}]"#)
        let relay = try Relay(config: without, logger: Logger(level: .error))
        relay.reload(try harness.config)
        return relay
    }

    @Test func breakerSendsOneAtATimeUntilSuccess() throws {
        let failures = 10
        let sink = try RecordingSink { index, _ in
            .init(status: index < failures ? 503 : 204, delaySeconds: 0.1)
        }
        defer { sink.shutdown() }
        let harness = try RelayHarness(
            destinations: Self.destination(sink.url, extra: #""concurrency": 4, "breakerThreshold": 2"#))
        defer { harness.finish() }
        for index in 0..<6 {
            #expect(try harness.post(Events.portOut("pout_b\(index)", status: "initiated")).status == 202)
        }
        #expect(waitUntil(timeoutSeconds: 20) { harness.relay!.deliveryStatistics().first?.delivered == 6 })
        let received = sink.received
        // Before the breaker opened, attempts overlapped.
        #expect(received.prefix(4).map(\.activeAtArrival).max()! > 1)
        // Two failures open it; from the seventh attempt until the first success, each went out alone.
        for attempt in received[6...failures] {
            #expect(attempt.activeAtArrival == 1)
        }
        let state = try Self.destinationState(harness)
        #expect(state["breaker"] == "closed")
        #expect(state["consecutiveFailures"] == 0)
    }

    @Test func goneDisablesDestinationUntilResumed() throws {
        let sink = try RecordingSink { index, _ in .init(status: index == 0 ? 410 : 204) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url), extra: Self.tokenConfig)
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_g", status: "initiated")).status == 202)
        #expect(waitUntil { (try? Self.destinationState(harness)["mode"]) == "disabled" })
        #expect(try harness.post(Events.portOut("pout_g", status: "processing")).status == 202)
        Thread.sleep(forTimeInterval: 0.8)
        #expect(sink.received.count == 1)
        let disabled = try Self.destinationState(harness)
        #expect(disabled["queueDepth"] == 2)
        #expect(disabled["modeReason"] == "destination answered 410 Gone")

        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/resume").status == 200)
        #expect(waitUntil { sink.received.count == 3 })
        #expect(sink.received.map(\.status) == ["initiated", "initiated", "processing"])
        #expect(harness.relay!.deliveryStatistics().first?.deadLettered == 0)
    }

    @Test func rateLimitSpacesDeliveries() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url, extra: #""concurrency": 8, "rateLimit": 4"#))
        defer { harness.finish() }
        for index in 0..<9 {
            #expect(try harness.post(Events.portOut("pout_rl\(index)", status: "initiated")).status == 202)
        }
        #expect(waitUntil(timeoutSeconds: 15) { sink.received.count == 9 })
        let times = sink.received.map(\.atMs).sorted()
        // At 4 a second with a burst of one, nine deliveries need at least two seconds; 100 ms allows for the
        // sink's clock reading each arrival late.
        #expect(times.last! - times.first! >= 1900)
        for (earlier, later) in zip(times, times.dropFirst()) {
            #expect(later - earlier >= 150)
        }
    }

    @Test func stalledListsOldNonTerminalPortOuts() throws {
        let harness = try RelayHarness(extra: #""stalledAfterSeconds": {"initiated": 1}"#)
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_s1", status: "initiated")).status == 202)
        #expect(try harness.post(Events.portOut("pout_s2", status: "processing")).status == 202)
        #expect(try harness.post(Events.portOut("pout_s3", status: "completed")).status == 202)
        Thread.sleep(forTimeInterval: 1.2)

        func ids(_ query: String) throws -> [String] {
            let list = try #require(try Self.admin(harness, "GET", "/admin/stalled\(query)", token: nil).json?.objectValue)
            return (list["data"]?.arrayValue ?? []).compactMap { $0.objectValue?["id"]?.stringValue }
        }
        #expect(try ids("") == ["pout_s1"])
        #expect(try ids("?olderThan=1s") == ["pout_s1", "pout_s2"])
        #expect(try ids("?olderThan=1h") == [])
        #expect(try ids("?olderThan=1s&status=processing") == ["pout_s2"])
        #expect(try ids("?tenant=nobody") == [])
        #expect(try Self.admin(harness, "GET", "/admin/stalled?olderThan=soon", token: nil).status == 422)
        #expect(try Self.admin(harness, "GET", "/admin/stalled?status=completed", token: nil).status == 422)
        #expect(try Self.admin(harness, "GET", "/admin/stalled?olderThan=1s&olderThan=1h", token: nil).status == 422)

        let metrics = String(decoding: try Self.admin(harness, "GET", "/metrics", token: nil).body, as: UTF8.self)
        #expect(metrics.contains(#"portout_stalled_port_outs{tenant="t1",status="initiated"} 1"#))

        // A status change restarts the clock.
        #expect(try harness.post(Events.portOut("pout_s1", status: "processing")).status == 202)
        #expect(try ids("") == [])
    }

    @Test func operationalWebhookCapsConcurrentSends() throws {
        let operations = try RecordingSink { _, _ in .init(status: 204, delaySeconds: 0.3) }
        defer { operations.shutdown() }
        let sink = try RecordingSink { _, _ in .init(status: 400) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(
            destinations: Self.destination(sink.url, extra: #""concurrency": 16, "breakerThreshold": 1000"#),
            extra: #""operationalWebhook": {"url": "\#(operations.url)/ops", "secret": "whsec_b3BzLXNlY3JldA=="}"#)
        defer { harness.finish() }
        for index in 0..<12 {
            #expect(try harness.post(Events.portOut("pout_op\(index)", status: "initiated")).status == 202)
        }
        #expect(waitUntil(timeoutSeconds: 15) { operations.received.count == 12 })
        #expect(operations.received.map(\.activeAtArrival).max()! <= OperationalWebhook.maxInFlight)
    }

    /// Deliveries that give up during the stop's grace period are reported before the relay stops, although
    /// their dead letters reach the list only as the journal closes. There are more of them than the webhook
    /// sends at once, so some wait for a slow endpoint.
    @Test func deadLettersAtStopAreReported() throws {
        let operations = try RecordingSink { _, _ in .init(status: 204, delaySeconds: 0.3) }
        defer { operations.shutdown() }
        let sink = try RecordingSink { _, _ in .init(status: 500, delaySeconds: 1) }
        defer { sink.shutdown() }
        let count = 2 * OperationalWebhook.maxInFlight
        let harness = try RelayHarness(
            destinations: DeliveryTests.destination(sink.url, maxAttempts: 1, extra: #""concurrency": \#(count)"#),
            extra: #""operationalWebhook": {"url": "\#(operations.url)/ops", "secret": "whsec_b3BzLXNlY3JldA=="}"#)
        defer { harness.finish() }
        for index in 0..<count {
            #expect(try harness.post(Events.portOut("pout_stop\(index)", status: "initiated")).status == 202)
        }
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.inFlight == count })
        harness.stop(graceSeconds: 5)
        #expect(operations.received.count == count)
        #expect(operations.received.allSatisfy { $0.json?["type"]?.stringValue == "deadLetter.created" })
    }

    @Test func operationalWebhookReportsRelayEvents() throws {
        let operations = try RecordingSink()
        defer { operations.shutdown() }
        let sink = try RecordingSink { index, received in
            switch received.portOut {
            case "pout_dl": return .init(status: index == 0 ? 400 : 204)
            case "pout_gone": return .init(status: 410)
            default: return .init(status: 204)
            }
        }
        defer { sink.shutdown() }
        let secret = "whsec_b3BlcmF0aW9ucy1zZWNyZXQtZm9yLXRlc3Rz"
        let previous = "whsec_b2xkLW9wZXJhdGlvbnMtc2VjcmV0"
        let harness = try RelayHarness(
            destinations: Self.destination(sink.url),
            extra: #""operationalWebhook": {"url": "\#(operations.url)/ops", "secret": "\#(secret)", "previousSecrets": ["\#(previous)"]}"#)
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_dl", status: "initiated")).status == 202)
        #expect(waitUntil { operations.received.count == 1 })
        let replay = try Self.admin(harness, "POST", "/admin/dead-letters/redeliver", token: nil, body: #"{"portOut": "pout_dl"}"#)
        #expect(replay.status == 202)
        #expect(waitUntil { operations.received.count == 2 })
        #expect(try harness.post(Events.portOut("pout_gone", status: "initiated")).status == 202)
        #expect(waitUntil { operations.received.count == 3 })

        let types = operations.received.map { $0.json?["type"]?.stringValue }
        #expect(types == ["deadLetter.created", "replay.finished", "destination.disabled"])
        #expect(operations.received[0].json?["data"]?.objectValue?["portOut"] == "pout_dl")
        #expect(operations.received[1].json?["data"]?.objectValue?["delivered"] == 1)
        #expect(operations.received[2].json?["data"]?.objectValue?["destination"] == "d1")
        for event in operations.received {
            let id = try #require(event.headers["webhook-id"])
            let timestamp = try #require(event.headers["webhook-timestamp"])
            let expected = [secret, previous].map { key in
                "v1," + WebhookSignature.standardWebhooks(
                    key: Secret(value: key, source: "test").keyBytes, id: id, timestamp: timestamp, body: event.body)
            }
            #expect(event.headers["webhook-signature"] == expected.joined(separator: " "))
            #expect(event.path == "/ops")
        }
    }
}
