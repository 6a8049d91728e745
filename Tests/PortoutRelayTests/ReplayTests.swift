import Foundation
import PortoutCore
import PortoutTestSupport
import Synchronization
import Testing

@testable import PortoutRelay

/// Replays from the journal and dead-letter redelivery through the admin API, with a sink on loopback.
@Suite(.serialized)
struct ReplayTests {
    static func admin(_ harness: RelayHarness, _ method: String, _ path: String, body: String = "") throws -> LoopbackClient.Response {
        try AdminTests.admin(harness, method, path, token: nil, body: body)
    }

    static func json(_ response: LoopbackClient.Response) throws -> JSONObject {
        try #require(response.json?.objectValue, "not a JSON object: \(String(decoding: response.body, as: UTF8.self))")
    }

    /// Starts a relay whose tenant `gigs` delivers everything to `sink`, and posts the whole fixture feed to it.
    static func startWithFeed(_ sink: RecordingSink) throws -> RelayHarness {
        let harness = try RelayHarness(
            tenantsJSON: """
                [{"id": "gigs", "projects": ["acme-mobile", "brit-tel"], "verify": {"secrets": ["\(RelayHarness.inboundSecret)"]},
                  "destinations": \(DeliveryTests.destination(sink.url, retrySchedule: "[0.2]", maxAttempts: 50))}]
                """)
        let lines = try String(contentsOfFile: CarrierFeedTests.feed, encoding: .utf8).split(separator: "\n")
        for (index, line) in lines.enumerated() {
            let status = try harness.post(Array(line.utf8), tenant: "gigs", messageID: "msg_feed_\(index)").status
            #expect((200..<300).contains(status))
        }
        return harness
    }

    /// The deliveries of the whole feed: every forwarded status, and the credential events as well.
    static var feedDeliveries: Int {
        let forwarded = CarrierFeedTests.expected["forwarded"]?.objectValue
        let statusDeliveries = forwarded?.members.reduce(0) { $0 + ($1.value.arrayValue?.count ?? 0) } ?? 0
        return statusDeliveries + (CarrierFeedTests.expected["credentialEvents"]?.intValue ?? 0)
    }

    /// Cancels replay `id`, whose deliveries wait on the paused destination `t1/d1`, then resumes the destination
    /// and checks that none of them goes out.
    static func cancelPausedReplay(
        _ harness: RelayHarness, _ id: String, withdrawn: Int, sink: RecordingSink, received: Int
    ) throws {
        let cancelled = try Self.admin(harness, "DELETE", "/admin/replays/\(id)")
        #expect(cancelled.status == 200)
        let job = try Self.waitForJob(harness, id, status: "cancelled")
        #expect(job["withdrawn"] == .number(Double(withdrawn)))
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/resume").status == 200)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.count == received)
    }

    /// Pauses destination d1 and starts a replay of `filter`, whose deliveries then wait; returns the job's id
    /// once it runs.
    static func startHeldReplay(_ harness: RelayHarness, filter: String) throws -> String {
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/pause").status == 200)
        let id = try #require(try Self.json(try Self.admin(harness, "POST", "/admin/replays", body: filter))["id"]?.stringValue)
        _ = try Self.waitForJob(harness, id, status: "running")
        return id
    }

    static func waitForJob(_ harness: RelayHarness, _ id: String, status: String) throws -> JSONObject {
        var last = JSONObject()
        _ = waitUntil(timeoutSeconds: 20) {
            last = (try? Self.json(try Self.admin(harness, "GET", "/admin/replays/\(id)"))) ?? JSONObject()
            return last["status"] == .string(status)
        }
        #expect(last["status"] == .string(status), "replay \(id): \(last)")
        return last
    }

    @Test func replayFiltersMatchExactly() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try Self.startWithFeed(sink)
        defer { harness.finish() }
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.delivered ?? 0 >= Self.feedDeliveries })
        let original = sink.received

        func preview(_ filter: String) throws -> Int {
            let response = try Self.admin(harness, "POST", "/admin/replays", body: #"{"dryRun": true, \#(filter)}"#)
            #expect(response.status == 200)
            return Int(try Self.json(response)["count"]?.numberValue ?? -1)
        }
        let forwarded = CarrierFeedTests.expected["forwarded"]?.objectValue
        let portOut = try #require(forwarded?.members.first { ($0.value.arrayValue?.count ?? 0) >= 3 }?.key)
        #expect(try preview(#""portOut": "\#(portOut)""#) == original.filter { $0.portOut == portOut }.count)
        #expect(try preview(#""status": "completed""#) == original.filter { $0.status == "completed" }.count)
        #expect(try preview(#""status": "expired,failed""#) == original.filter { ["expired", "failed"].contains($0.status) }.count)
        let credentials = "com.gigs.portOutCredentials.issued"
        #expect(try preview(#""type": "\#(credentials)""#) == original.filter { $0.json?["type"] == .string(credentials) }.count)
        #expect(try preview(#""tenant": "gigs""#) == original.count)
        #expect(try preview(#""tenant": "gigs", "destination": "d1", "to": "2000-01-01T00:00:00Z""#) == 0)
        #expect(try preview(#""tenant": "gigs", "from": "2000-01-01T00:00:00Z""#) == original.count)
        #expect(try preview(#""tenant": "gigs", "deadLetteredOnly": true"#) == 0)
        let eventID = try #require(original.first?.json?["id"]?.stringValue)
        #expect(try preview(#""event": "\#(eventID)""#) == 1)
        // Nothing could be sent to a tenant or destination that is not configured, so naming one is an error.
        #expect(try Self.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "other"}"#).status == 422)
        #expect(try Self.admin(harness, "POST", "/admin/replays", body: #"{"destination": "nosuch"}"#).status == 422)

        let rejected = try Self.admin(harness, "POST", "/admin/replays", body: #"{"status": "lost", "from": "yesterday"}"#)
        #expect(rejected.status == 422)
        let fields = try Self.json(rejected)["details"]?.arrayValue?.compactMap { $0.objectValue?["field"]?.stringValue }
        #expect(fields == ["status", "from"])
        // Both are valid RFC 3339, but their offsets put them outside years 0000 to 9999 in UTC.
        let outOfRange = try Self.admin(
            harness, "POST", "/admin/replays",
            body: #"{"from": "0000-01-01T00:00:00+00:01", "to": "9999-12-31T23:59:59-00:01"}"#)
        #expect(outOfRange.status == 422)
        let outOfRangeFields = try Self.json(outOfRange)["details"]?.arrayValue?.compactMap { $0.objectValue?["field"]?.stringValue }
        #expect(outOfRangeFields == ["from", "to"])
        #expect(try Self.admin(harness, "POST", "/admin/replays", body: "{}").status == 422)
        #expect(try Self.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "gigs", "dryRun": "true"}"#).status == 422)
        #expect(try Self.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "gigs", "deadLetteredOnly": "true"}"#).status == 422)
        #expect(try Self.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "gigs", "surprise": 1}"#).status == 422)
    }

    @Test func replayKeepsEachPortOutsOrder() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try Self.startWithFeed(sink)
        defer { harness.finish() }
        // The engine's counts lag the deliveries it has not taken from its inbox yet, so a pending count of 0
        // alone can come before the last of the feed is even queued.
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.delivered ?? 0 >= Self.feedDeliveries })
        let original = sink.received
        #expect(original.count == Self.feedDeliveries)
        let started = try Self.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "gigs"}"#)
        #expect(started.status == 202)
        let id = try #require(try Self.json(started)["id"]?.stringValue)
        #expect(started.header("Location") == "/admin/replays/\(id)")
        let job = try Self.waitForJob(harness, id, status: "completed")
        #expect(job["matched"] == .number(Double(original.count)))
        #expect(job["queued"] == .number(Double(original.count)))
        #expect(job["delivered"] == .number(Double(original.count)))
        let late = try Self.admin(harness, "DELETE", "/admin/replays/\(id)")
        #expect(late.status == 409)
        #expect(try Self.json(late)["code"] == "replayFinished")
        #expect(try Self.json(try Self.admin(harness, "GET", "/admin/replays/\(id)"))["cancelRequested"] == .bool(false))

        let replayed = Array(sink.received.dropFirst(original.count))
        #expect(replayed.count == original.count)
        func statusesByPortOut(_ deliveries: [RecordingSink.Received]) -> [String: [String]] {
            var result: [String: [String]] = [:]
            for delivery in deliveries {
                if let portOut = delivery.portOut, let status = delivery.status {
                    result[portOut, default: []].append(status)
                }
            }
            return result
        }
        #expect(statusesByPortOut(replayed) == statusesByPortOut(original))
        // The webhook-id stays the event id, so a receiver's dedupe recognises the replayed copies.
        #expect(Set(replayed.compactMap { $0.headers["webhook-id"] }) == Set(original.compactMap { $0.headers["webhook-id"] }))
    }

    /// Posts `portOuts` initiated statuses, waits until they are delivered, runs `beforeReplay`, then starts a
    /// replay of tenant t1 and returns its id.
    static func replayDelivered(
        _ harness: RelayHarness, portOuts: Int, prefix: String, beforeReplay: () throws -> Void = {}
    ) throws -> String {
        for index in 0..<portOuts {
            #expect(try harness.post(Events.portOut("\(prefix)\(index)", status: "initiated")).status == 202)
        }
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.delivered == portOuts })
        try beforeReplay()
        let started = try Self.json(try Self.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "t1"}"#))
        return try #require(started["id"]?.stringValue)
    }

    @Test func cancelWithdrawsQueuedReplay() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url))
        defer { harness.finish() }
        let id = try Self.replayDelivered(harness, portOuts: 5, prefix: "pout_c") { () throws in
            #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/pause").status == 200)
        }
        #expect(waitUntil { (try? Self.json(try Self.admin(harness, "GET", "/admin/replays/\(id)"))["queued"]) == 5 })

        try Self.cancelPausedReplay(harness, id, withdrawn: 5, sink: sink, received: 5)
        // The withdrawals are journaled, so a restart does not queue them again.
        try harness.restart()
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.count == 5)
        #expect(harness.relay!.deliveryStatistics().first?.pending == 0)
    }

    /// A cancel that finds attempts in flight leaves the job running until they settle, so that its final counts
    /// include them: here one is delivered, and the other fails and is withdrawn instead of retried.
    @Test func cancelWaitsForAttemptsInFlight() throws {
        let sink = try RecordingSink { index, _ in
            switch index {
            case 0, 1: return .init(status: 204)
            case 2: return .init(status: 204, delaySeconds: 1.5)
            default: return .init(status: 500, delaySeconds: 1.5)
            }
        }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url))
        defer { harness.finish() }
        let id = try Self.replayDelivered(harness, portOuts: 2, prefix: "pout_f")
        #expect(waitUntil { sink.received.count == 4 })

        let cancelled = try Self.json(try Self.admin(harness, "DELETE", "/admin/replays/\(id)"))
        #expect(cancelled["status"] == "running")
        #expect(cancelled["cancelRequested"] == .bool(true))
        let job = try Self.waitForJob(harness, id, status: "cancelled")
        #expect(job["delivered"] == 1)
        #expect(job["withdrawn"] == 1)
        // The failure is still the destination's last error.
        let statistics = try #require(harness.relay!.deliveryStatistics().first)
        #expect(statistics.lastError?.hasPrefix("destination answered 500; withdrawn instead of retried") == true)
        // A second cancel changes nothing and is not an error.
        let again = try Self.admin(harness, "DELETE", "/admin/replays/\(id)")
        #expect(again.status == 200)
        #expect(try Self.json(again)["status"] == "cancelled")
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.count == 4)
    }

    @Test func replayResumesAfterRestart() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url))
        defer { harness.finish() }
        for status in ["initiated", "processing", "issued"] {
            #expect(try harness.post(Events.portOut("pout_r", status: status)).status == 202)
        }
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.delivered == 3 })
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/pause").status == 200)
        let id = try #require(try Self.json(try Self.admin(harness, "POST", "/admin/replays", body: #"{"portOut": "pout_r"}"#))["id"]?.stringValue)
        #expect(waitUntil { (try? Self.json(try Self.admin(harness, "GET", "/admin/replays/\(id)"))["queued"]) == 3 })
        try harness.restart()
        // The job and its journaled deliveries are back, in order. The delivery thread counts the deliveries once
        // it takes them in, which may be just after the restart returns.
        let restored = try Self.json(try Self.admin(harness, "GET", "/admin/replays/\(id)"))
        #expect(restored["status"] == "running")
        #expect(restored["queued"] == 3)
        #expect(restored["delivered"] == 0)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.pending == 3 })
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/resume").status == 200)
        #expect(waitUntil { sink.received.count == 6 })
        #expect(sink.received.suffix(3).map(\.status) == ["initiated", "processing", "issued"])
        #expect(try Self.waitForJob(harness, id, status: "completed")["delivered"] == 3)
    }

    @Test func deadLettersListAndRedeliver() throws {
        let rejecting = Atomic<Bool>(true)
        let sink = try RecordingSink { _, received in
            .init(status: rejecting.load(ordering: .relaxed) && received.portOut != "pout_ok" ? 400 : 204)
        }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_ok", status: "initiated")).status == 202)
        for index in 0..<3 {
            #expect(try harness.post(Events.portOut("pout_bad\(index)", status: "initiated")).status == 202)
        }
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.deadLettered == 3 })
        // Listed once their outcomes are journaled, a moment after they count as dead-lettered.
        #expect(waitUntil { harness.relay!.deadLetters.count == 3 })

        let list = try Self.json(try Self.admin(harness, "GET", "/admin/dead-letters"))
        let items = list["data"]?.arrayValue?.compactMap(\.objectValue) ?? []
        #expect(items.map { $0["portOut"] } == ["pout_bad0", "pout_bad1", "pout_bad2"])
        #expect(items.first?["httpStatus"] == 400)
        #expect(items.first?["destination"] == "d1")
        #expect(items.first?["reason"] == "destination answered 400")
        #expect(list["hasMore"] == false)

        let firstPage = try Self.json(try Self.admin(harness, "GET", "/admin/dead-letters?limit=2"))
        #expect(firstPage["data"]?.arrayValue?.count == 2)
        #expect(firstPage["hasMore"] == true)
        let cursor = try #require(firstPage["nextStartingAfter"]?.stringValue)
        let secondPage = try Self.json(try Self.admin(harness, "GET", "/admin/dead-letters?limit=2&startingAfter=\(cursor)"))
        #expect(secondPage["data"]?.arrayValue?.compactMap { $0.objectValue?["portOut"] } == ["pout_bad2"])
        let filtered = try Self.json(try Self.admin(harness, "GET", "/admin/dead-letters?portOut=pout_bad1"))
        #expect(filtered["data"]?.arrayValue?.count == 1)
        #expect(try Self.admin(harness, "GET", "/admin/dead-letters?limit=0").status == 422)
        #expect(try Self.admin(harness, "GET", "/admin/dead-letters?colour=red").status == 422)

        // The list is rebuilt from the journal at start.
        try harness.restart()
        let ids = (try Self.json(try Self.admin(harness, "GET", "/admin/dead-letters"))["data"]?.arrayValue ?? [])
            .compactMap { $0.objectValue?["id"]?.stringValue }
        #expect(ids.count == 3)

        rejecting.store(false, ordering: .relaxed)
        let unknown = try Self.admin(harness, "POST", "/admin/dead-letters/redeliver", body: #"{"ids": ["dl_999_d1"]}"#)
        #expect(unknown.status == 422)
        // The error for an empty request names the fields that a redelivery takes.
        let empty = try Self.json(try Self.admin(harness, "POST", "/admin/dead-letters/redeliver", body: "{}"))
        let message = empty["details"]?.arrayValue?.first?.objectValue?["message"]?.stringValue ?? ""
        #expect(empty["code"] == "filterRequired")
        #expect(message.contains("portOut"))
        #expect(!message.contains("deadLetteredOnly"))
        let redelivery = try Self.admin(harness, "POST", "/admin/dead-letters/redeliver", body: #"{"ids": ["\#(ids[0])", "\#(ids[2])"]}"#)
        #expect(redelivery.status == 202)
        let id = try #require(try Self.json(redelivery)["id"]?.stringValue)
        let job = try Self.waitForJob(harness, id, status: "completed")
        #expect(job["delivered"] == 2)
        #expect(job["kind"] == "redelivery")
        #expect(job["ids"] == .array([.string(ids[0]), .string(ids[2])]))
        #expect(job["idCount"] == 2)
        let remaining = try Self.json(try Self.admin(harness, "GET", "/admin/dead-letters"))["data"]?.arrayValue ?? []
        #expect(remaining.compactMap { $0.objectValue?["portOut"] } == ["pout_bad1"])

        let byFilter = try Self.admin(harness, "POST", "/admin/dead-letters/redeliver", body: #"{"destination": "d1"}"#)
        #expect(byFilter.status == 202)
        let filterJob = try #require(try Self.json(byFilter)["id"]?.stringValue)
        let finishedFilterJob = try Self.waitForJob(harness, filterJob, status: "completed")
        #expect(finishedFilterJob["delivered"] == 1)
        #expect(finishedFilterJob["ids"] == nil)
        try harness.restart()
        // The ids are saved with the job.
        let restored = try Self.json(try Self.admin(harness, "GET", "/admin/replays/\(id)"))
        #expect(restored["ids"] == .array([.string(ids[0]), .string(ids[2])]))
        #expect(restored["idCount"] == 2)
        #expect((try Self.json(try Self.admin(harness, "GET", "/admin/dead-letters"))["data"]?.arrayValue ?? []).isEmpty)
        var dumped: [String] = []
        try JournalCommands.dump(dataDirectory: harness.directory.path + "/data", bodies: false, deadLettersOnly: true) {
            dumped.append($0)
        }
        #expect(dumped.isEmpty, "journal dump --dead-letters listed redelivered ones: \(dumped)")
    }

    static func deliveries(_ harness: RelayHarness, _ query: String) throws -> [JSONObject] {
        let list = try Self.json(try Self.admin(harness, "GET", "/admin/deliveries?\(query)"))
        return list["data"]?.arrayValue?.compactMap(\.objectValue) ?? []
    }

    static func steps(_ delivery: JSONObject?) -> [String] {
        (delivery?["steps"]?.arrayValue ?? []).compactMap { step in
            guard let step = step.objectValue else { return nil }
            return step["kind"] == "attempt" ? step["outcome"]?.stringValue : step["kind"]?.stringValue
        }
    }

    @Test func deliveryHistoryShowsEachStep() throws {
        let rejecting = Atomic<Bool>(true)
        let sink = try RecordingSink { index, received in
            switch received.portOut {
            case "pout_flaky" where index == 0: return .init(status: 503)
            case "pout_rejected" where rejecting.load(ordering: .relaxed): return .init(status: 400)
            default: return .init(status: 204)
            }
        }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url, retrySchedule: "[0.2]"))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_flaky", status: "initiated")).status == 202)
        #expect(waitUntil { sink.received.count == 2 })
        let rejectedEvent = Events.portOut("pout_rejected", status: "initiated", eventID: "evt_rejected")
        #expect(try harness.post(rejectedEvent).status == 202)
        #expect(try harness.post(Events.portOut("pout_flaky", status: "processing")).status == 202)
        // Attempts reach the journal a moment after the sink responds to them.
        let settled: [JSONValue?] = ["delivered", "deadLettered", "delivered"]
        #expect(waitUntil { (try? Self.deliveries(harness, "destination=d1").map { $0["state"] }) == settled })

        let flaky = try Self.deliveries(harness, "portOut=pout_flaky&status=initiated")
        #expect(flaky.count == 1)
        #expect(Self.steps(flaky.first) == ["retryScheduled", "delivered"])
        let firstTry = flaky.first?["steps"]?.arrayValue?.first?.objectValue
        #expect(firstTry?["httpStatus"] == 503)
        #expect(firstTry?["attempt"] == 1)
        #expect(firstTry?["nextAttemptAt"]?.stringValue != nil)
        #expect(firstTry?["error"] == "destination answered 503")
        #expect(flaky.first?["event"] == "evt_pout_flaky_initiated")

        let rejected = try Self.deliveries(harness, "event=evt_rejected")
        #expect(rejected.map { $0["portOut"] } == ["pout_rejected"])
        #expect(rejected.first?["state"] == "deadLettered")
        let rejectedID = try #require(rejected.first?["id"]?.stringValue)

        // The redelivery's copy is part of the same delivery, after the dead letter.
        rejecting.store(false, ordering: .relaxed)
        let deadLetterID = rejectedID.replacingOccurrences(of: "dlv_", with: "dl_")
        let job = try Self.json(try Self.admin(
            harness, "POST", "/admin/dead-letters/redeliver", body: #"{"ids": ["\#(deadLetterID)"]}"#))
        let jobID = try #require(job["id"]?.stringValue)
        _ = try Self.waitForJob(harness, jobID, status: "completed")
        #expect(waitUntil { (try? Self.deliveries(harness, "event=evt_rejected").first?["state"]) == "delivered" })
        let redelivered = try Self.deliveries(harness, "event=evt_rejected").first
        #expect(Self.steps(redelivered) == ["deadLettered", "queuedByReplay", "delivered"])
        #expect(redelivered?["steps"]?.arrayValue?[1].objectValue?["replay"] == .string(jobID))

        // Pages go by event, then destination, and survive a restart, since they are read from the journal.
        try harness.restart()
        let first = try Self.json(try Self.admin(harness, "GET", "/admin/deliveries?limit=2"))
        let firstIDs = (first["data"]?.arrayValue ?? []).compactMap { $0.objectValue?["id"]?.stringValue }
        #expect(firstIDs.count == 2)
        #expect(firstIDs[1] == rejectedID)
        #expect(first["hasMore"] == true)
        #expect(first["nextStartingAfter"] == .string(rejectedID))
        let secondPath = "/admin/deliveries?limit=2&startingAfter=\(rejectedID)"
        let second = try Self.json(try Self.admin(harness, "GET", secondPath))
        #expect(second["data"]?.arrayValue?.compactMap { $0.objectValue?["status"] } == ["processing"])
        #expect(second["hasMore"] == false)
        #expect(second["nextStartingAfter"] == .null)

        for query in ["startingAfter=\(deadLetterID)", "deadLetteredOnly=true", "limit=201", "event=", "colour=red"] {
            #expect(try Self.admin(harness, "GET", "/admin/deliveries?\(query)").status == 422, "\(query)")
        }

        // The command prints the same entries from the journal, which it may read beside the relay.
        let outputPath = harness.directory.path + "/deliveries.jsonl"
        let command = try ReplayCommandTests.launch(
            RelayProcess.binary,
            ["journal", "deliveries", "--data-dir", harness.directory.path + "/data", "--limit", "2"],
            outputPath: outputPath)
        command.waitUntilExit()
        #expect(command.terminationStatus == 0)
        let printed = try String(contentsOfFile: outputPath, encoding: .utf8).split(separator: "\n")
            .compactMap { try? JSONParser.parse(Array($0.utf8)).objectValue }
        let listed = first["data"]?.arrayValue?.compactMap(\.objectValue) ?? []
        #expect(printed.count == 2)
        #expect(printed == listed)
    }

    /// Each read takes the whole journal, so at most two wait or run, and a third request is turned away at once.
    @Test func deliveryHistoryReadsAreLimited() throws {
        let harness = try RelayHarness(destinations: "[]")
        defer { harness.finish() }
        let release = DispatchSemaphore(value: 0)
        let holding = DispatchSemaphore(value: 0)
        let replays = try #require(harness.relay?.replays)
        let adminPort = harness.adminPort
        // Holds the scan queue, as a long replay scan would.
        DispatchQueue.global().async {
            replays.runExclusively {
                holding.signal()
                release.wait()
            }
        }
        holding.wait()
        let statuses = Locked<[Int]>([])
        let group = DispatchGroup()
        for _ in 0..<2 {
            DispatchQueue.global().async(group: group) {
                let status = (try? LoopbackClient(port: adminPort).request("GET", "/admin/deliveries"))??.status ?? 0
                statuses.withLock { $0.append(status) }
            }
        }
        #expect(waitUntil { replays.queuedHistoryReads == 2 })
        let turnedAway = try Self.admin(harness, "GET", "/admin/deliveries")
        #expect(turnedAway.status == 429)
        #expect(try Self.json(turnedAway)["code"] == "deliveryHistoryBusy")
        release.signal()
        group.wait()
        #expect(statuses.withLock { $0 } == [200, 200])
        #expect(try Self.admin(harness, "GET", "/admin/deliveries").status == 200)
    }

    @Test func cancelledRedeliveryKeepsDeadLetters() throws {
        let sink = try RecordingSink { _, _ in .init(status: 400) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url))
        defer { harness.finish() }
        for index in 0..<2 {
            #expect(try harness.post(Events.portOut("pout_keep\(index)", status: "initiated")).status == 202)
        }
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.deadLettered == 2 })
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/pause").status == 200)
        let job = try Self.json(try Self.admin(harness, "POST", "/admin/dead-letters/redeliver", body: #"{"destination": "d1"}"#))
        let id = try #require(job["id"]?.stringValue)
        #expect(waitUntil { (try? Self.json(try Self.admin(harness, "GET", "/admin/replays/\(id)"))["queued"]) == 2 })
        // While the redelivery waits, its dead letters are off the list.
        #expect((try Self.json(try Self.admin(harness, "GET", "/admin/dead-letters"))["data"]?.arrayValue ?? []).isEmpty)

        #expect(try Self.admin(harness, "DELETE", "/admin/replays/\(id)").status == 200)
        #expect(try Self.waitForJob(harness, id, status: "cancelled")["withdrawn"] == 2)
        func listed() throws -> Int {
            (try Self.json(try Self.admin(harness, "GET", "/admin/dead-letters"))["data"]?.arrayValue ?? []).count
        }
        // Listed again once the withdrawals are journaled.
        #expect(waitUntil { (try? listed()) == 2 })
        let history = try Self.deliveries(harness, "destination=d1")
        #expect(history.map { $0["state"] } == ["deadLettered", "deadLettered"])
        #expect(Self.steps(history.first) == ["deadLettered", "queuedByReplay", "withdrawn"])
        try harness.restart()
        #expect(try listed() == 2)
        // A journal scan agrees that they are dead letters again.
        let preview = try Self.json(try Self.admin(
            harness, "POST", "/admin/replays", body: #"{"destination": "d1", "deadLetteredOnly": true, "dryRun": true}"#))
        #expect(preview["count"] == 2)
    }

    @Test func cancelReachesRemovedDestination() throws {
        let sink = try RecordingSink { _, _ in .init(status: 400) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_rm", status: "initiated")).status == 202)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.deadLettered == 1 })
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/pause").status == 200)
        let job = try Self.json(try Self.admin(harness, "POST", "/admin/replays", body: #"{"portOut": "pout_rm"}"#))
        let id = try #require(job["id"]?.stringValue)
        #expect(waitUntil { (try? Self.json(try Self.admin(harness, "GET", "/admin/replays/\(id)"))["queued"]) == 1 })

        let without = try harness.config(
            tenantsJSON: #"[{"id": "t1", "projects": ["acme-mobile"], "verify": {"secrets": ["\#(RelayHarness.inboundSecret)"]}}]"#)
        harness.relay!.reload(without)
        // The reload finished the job without the delivery, as a start without the destination would.
        #expect(try Self.json(try Self.admin(harness, "GET", "/admin/replays/\(id)"))["status"] == "completed")
        let cancelled = try Self.json(try Self.admin(harness, "DELETE", "/admin/replays/\(id)"))
        #expect(cancelled["withdrawn"] == 1)
        #expect(cancelled["notConfigured"] == 0)
        // Its dead letter is back once the withdrawal is journaled, but cannot be redelivered while the
        // destination is not configured.
        let listed = {
            (try? Self.json(try Self.admin(harness, "GET", "/admin/dead-letters"))["data"]?.arrayValue ?? [])?
                .compactMap { $0.objectValue?["id"]?.stringValue } ?? []
        }
        #expect(waitUntil { listed().count == 1 })
        let ids = listed()
        let redelivery = try Self.admin(harness, "POST", "/admin/dead-letters/redeliver", body: #"{"ids": ["\#(ids.first ?? "")"]}"#)
        #expect(redelivery.status == 422)

        harness.relay!.reload(try harness.config)
        #expect(try Self.admin(harness, "POST", "/admin/destinations/t1/d1/resume").status == 200)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.count == 1)
    }

    @Test func redeliveryAgeCountsFromReplay() throws {
        let failuresLeft = Atomic<Int>(1000)
        let sink = try RecordingSink { _, _ in
            .init(status: failuresLeft.subtract(1, ordering: .relaxed).oldValue > 0 ? 503 : 204)
        }
        defer { sink.shutdown() }
        let harness = try RelayHarness(
            destinations: DeliveryTests.destination(sink.url, retrySchedule: "[0.2]", maxAttempts: 50, extra: #""maxAgeSeconds": 1"#))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_age", status: "initiated")).status == 202)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.deadLettered == 1 })
        Thread.sleep(forTimeInterval: 1.2)
        // The event is now older than maxAgeSeconds, but the redelivery's retries count from the redelivery.
        failuresLeft.store(1, ordering: .relaxed)
        let job = try Self.json(try Self.admin(harness, "POST", "/admin/dead-letters/redeliver", body: #"{"portOut": "pout_age"}"#))
        let id = try #require(job["id"]?.stringValue)
        let finished = try Self.waitForJob(harness, id, status: "completed")
        #expect(finished["delivered"] == 1)
        #expect(finished["deadLettered"] == 0)
    }

    /// Jobs with the given statuses, created one millisecond apart, oldest first, and restored into the
    /// relay of `harness` when there is one.
    static func restoreJobs(_ harness: RelayHarness?, statuses: [ReplayJob.Status]) -> [ReplayJob] {
        var filter = DeliveryFilter()
        filter.tenant = "t1"
        let jobs = statuses.enumerated().map { index, status in
            var progress = ReplayJob.Progress()
            progress.status = status
            return ReplayJob(
                id: "rpl_\(index)", kind: "replay", filter: filter, createdAtMs: 1_000 + Int64(index), progress: progress)
        }
        harness?.relay!.replays.registry.restore(jobs)
        return jobs
    }

    static func listedIDs(_ list: JSONObject) -> [String] {
        list["data"]?.arrayValue?.compactMap { $0.objectValue?["id"]?.stringValue } ?? []
    }

    @Test func replayListPagesNewestFirst() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        _ = Self.restoreJobs(harness, statuses: [.completed, .failed, .completed, .running, .completed])

        let first = try Self.json(try Self.admin(harness, "GET", "/admin/replays?limit=2"))
        #expect(Self.listedIDs(first) == ["rpl_4", "rpl_3"])
        #expect(first["hasMore"] == true)
        #expect(first["nextStartingAfter"] == "rpl_3")

        let second = try Self.json(try Self.admin(harness, "GET", "/admin/replays?limit=2&startingAfter=rpl_3"))
        #expect(Self.listedIDs(second) == ["rpl_2", "rpl_1"])
        #expect(second["nextStartingAfter"] == "rpl_1")

        let last = try Self.json(try Self.admin(harness, "GET", "/admin/replays?limit=2&startingAfter=rpl_1"))
        #expect(Self.listedIDs(last) == ["rpl_0"])
        #expect(last["hasMore"] == false)
        #expect(last["nextStartingAfter"] == .null)

        let completed = try Self.json(try Self.admin(harness, "GET", "/admin/replays?status=completed&limit=1&startingAfter=rpl_4"))
        #expect(Self.listedIDs(completed) == ["rpl_2"])
        #expect(completed["nextStartingAfter"] == "rpl_2")

        let twoStatuses = try Self.json(try Self.admin(harness, "GET", "/admin/replays?status=failed,,running,"))
        #expect(Self.listedIDs(twoStatuses) == ["rpl_3", "rpl_1"])

        let all = try Self.json(try Self.admin(harness, "GET", "/admin/replays"))
        #expect(Self.listedIDs(all) == ["rpl_4", "rpl_3", "rpl_2", "rpl_1", "rpl_0"])
        #expect(all["hasMore"] == false)
    }

    @Test(arguments: [
        ("status=done", "status"), ("status=,", "status"), ("limit=0", "limit"), ("limit=201", "limit"), ("startingAfter=rpl_gone", "startingAfter"),
        ("tenant=t1", "tenant"), ("limit=5&limit=50", "limit"), ("status=completed&status=failed", "status"), ("limit=%zz", "limit"),
    ])
    func replayListRejectsBadQuery(query: String, field: String) throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        _ = Self.restoreJobs(harness, statuses: [.completed])
        let response = try Self.admin(harness, "GET", "/admin/replays?\(query)")
        #expect(response.status == 422)
        let details = try Self.json(response)["details"]?.arrayValue
        #expect(details?.compactMap { $0.objectValue?["field"]?.stringValue } == [field])
    }

    /// At most `admin.maxUnfinishedReplays` replays and redeliveries run at once, and finishing one or raising
    /// the limit with a reload makes room.
    @Test func unfinishedReplaysAreLimited() throws {
        // The journal is empty, so nothing is ever sent to this destination.
        let admin = #""admin": {"listen": "127.0.0.1:0", "maxUnfinishedReplays": 3}"#
        let destinations = DeliveryTests.destination("http://127.0.0.1:9")
        let harness = try RelayHarness(destinations: destinations, extra: admin)
        defer { harness.finish() }
        let jobs = Self.restoreJobs(harness, statuses: [.completed, .running, .running, .scanning])

        let replay = try Self.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "t1"}"#)
        #expect(replay.status == 429)
        #expect(try Self.json(replay)["code"] == "tooManyReplays")
        let message = try Self.json(replay)["message"]?.stringValue
        #expect(message == "3 replays and redeliveries are unfinished, and the relay runs at most 3 at once (admin.maxUnfinishedReplays).")
        let redelivery = try Self.admin(harness, "POST", "/admin/dead-letters/redeliver", body: #"{"tenant": "t1"}"#)
        #expect(redelivery.status == 429)
        #expect(harness.relay!.replays.registry.all().count == jobs.count)

        harness.relay!.replays.registry.finish(jobs[1], status: .cancelled)
        let started = try Self.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "t1"}"#)
        #expect(started.status == 202)
        // It matches nothing, so it completes and leaves the three restored jobs unfinished.
        _ = try Self.waitForJob(harness, try #require(try Self.json(started)["id"]?.stringValue), status: "completed")

        var progress = ReplayJob.Progress()
        progress.status = .running
        let filter = jobs[0].filter
        harness.relay!.replays.registry.restore([
            ReplayJob(id: "rpl_more", kind: "replay", filter: filter, createdAtMs: 2_000, progress: progress)
        ])
        #expect(try Self.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "t1"}"#).status == 429)
        let raised = try harness.config(
            tenantsJSON: RelayHarness.tenantsJSON(destinations: destinations),
            extra: admin.replacingOccurrences(of: ": 3}", with: ": 4}"))
        #expect(harness.relay!.reload(raised).settingsChanged == ["admin.maxUnfinishedReplays"])
        let afterReload = try Self.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "t1"}"#)
        #expect(afterReload.status == 202, "\(String(decoding: afterReload.body, as: UTF8.self))")
    }
}

/// `portout-relay replay`, online through the admin listener and offline from the journal.
@Suite(.serialized)
struct ReplayCommandTests {
    static func run(_ arguments: [String]) throws -> (status: Int32, lines: [String]) {
        let lines = Locked<[String]>([])
        let status = try ReplayCommand.run(arguments[...]) { line in lines.withLock { $0.append(line) } }
        return (status, lines.withLock { $0 })
    }

    static func startWithDeliveries(_ sink: RecordingSink) throws -> (RelayHarness, String) {
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url))
        for status in ["initiated", "processing", "issued"] {
            #expect(try harness.post(Events.portOut("pout_cli", status: status)).status == 202)
        }
        #expect(try harness.post(Events.portOut("pout_other", status: "initiated")).status == 202)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.delivered == 4 })
        let configPath = harness.directory.file("config.json")
        try harness.configText.write(toFile: configPath, atomically: true, encoding: .utf8)
        return (harness, configPath)
    }

    /// Starts a relay as `startWithDeliveries` does, then makes the sink return 500, so that later deliveries
    /// stay pending.
    static func startWithFailingSink() throws -> (RecordingSink, RelayHarness, String) {
        let failing = Atomic<Bool>(false)
        let sink = try RecordingSink { _, _ in failing.load(ordering: .relaxed) ? .init(status: 500) : .init(status: 204) }
        let (harness, configPath) = try Self.startWithDeliveries(sink)
        failing.store(true, ordering: .relaxed)
        return (sink, harness, configPath)
    }

    /// Starts a relay as `startWithDeliveries` does and pauses its destination, so that a replay cannot finish.
    /// Returns the relay, its configuration's path and its admin URL.
    static func startPaused(_ sink: RecordingSink) throws -> (RelayHarness, String, String) {
        let (harness, configPath) = try Self.startWithDeliveries(sink)
        #expect(try ReplayTests.admin(harness, "POST", "/admin/destinations/t1/d1/pause").status == 200)
        return (harness, configPath, "http://127.0.0.1:\(harness.adminPort)")
    }

    /// Runs `executable` as a child process with its standard output in `outputPath`.
    static func launch(_ executable: String, _ arguments: [String], outputPath: String) throws -> Process {
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle(forWritingAtPath: outputPath)
        try process.run()
        return process
    }

    /// An offline replay counts a replay whose deliveries are pending but whose saved entry is gone, as the
    /// relay's start does.
    @Test func offlineReplayCountsRecoveredJobs() throws {
        let (sink, harness, configPath) = try Self.startWithFailingSink()
        defer { sink.shutdown() }
        defer { harness.finish() }
        let replay = try ReplayTests.admin(harness, "POST", "/admin/replays", body: #"{"portOut": "pout_other"}"#)
        let id = try #require(try ReplayTests.json(replay)["id"]?.stringValue)
        #expect(waitUntil { (try? ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)")))?["queued"] == 1 })
        harness.stop()
        try Data("not json".utf8).write(to: URL(fileURLWithPath: ReplayJobFile(dataDirectory: harness.directory.path + "/data").path))
        let limited = harness.configText.replacingOccurrences(
            of: #""admin": {"listen": "127.0.0.1:0"}"#, with: #""admin": {"listen": "127.0.0.1:0", "maxUnfinishedReplays": 1}"#)
        try limited.write(toFile: configPath, atomically: true, encoding: .utf8)

        do {
            _ = try Self.run(["--offline", "--config", configPath, "--port-out", "pout_cli"])
            Issue.record("an offline replay started past the limit, counting a recovered replay")
        } catch let error as CommandError {
            #expect(error.description.hasPrefix("1 replay or redelivery is unfinished"), "\(error)")
        }
    }

    /// A saved job that the relay's next start would fail does not count against the limit: here a redelivery
    /// stopped before it queued anything.
    @Test func offlineReplaySkipsJobsStartWouldFinish() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let (harness, configPath) = try Self.startWithDeliveries(sink)
        defer { harness.finish() }
        harness.stop()
        let file = ReplayJobFile(dataDirectory: harness.directory.path + "/data")
        try file.save([ReplayJob(kind: "redelivery", filter: ReplayRestartTests.tenantFilter())])
        let limited = harness.configText.replacingOccurrences(
            of: #""admin": {"listen": "127.0.0.1:0"}"#, with: #""admin": {"listen": "127.0.0.1:0", "maxUnfinishedReplays": 1}"#)
        try limited.write(toFile: configPath, atomically: true, encoding: .utf8)

        let result = try Self.run(["--offline", "--config", configPath, "--port-out", "pout_cli", "--wait", "20"])
        #expect(result.status == 0, "\(result.lines)")
        #expect(try file.load().jobs.count == 2)
    }

    /// An offline replay withdraws the pending deliveries of a replay cancelled before the stop, as the relay's
    /// start does, instead of sending them with its own.
    @Test func offlineReplayWithdrawsCancelledReplay() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let (harness, configPath) = try Self.startWithDeliveries(sink)
        defer { harness.finish() }
        _ = try ReplayTests.startHeldReplay(harness, filter: #"{"portOut": "pout_cli"}"#)
        harness.stop()
        let file = ReplayJobFile(dataDirectory: harness.directory.path + "/data")
        let saved = try #require(try file.load().jobs.first)
        // Saved as cancelled, as if the stop came before the withdrawals reached the journal.
        saved.progress.withLock { $0.status = .cancelled }
        try file.save([saved])
        try FileManager.default.removeItem(atPath: harness.directory.path + "/data/destinations.json")

        let result = try Self.run(["--offline", "--config", configPath, "--port-out", "pout_other", "--wait", "20"])
        #expect(result.status == 0, "\(result.lines)")
        #expect(sink.received.dropFirst(4).map { $0.portOut ?? "" } == ["pout_other"])
        try harness.start()
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.count == 5)
    }

    /// A job that completed without the deliveries of a destination removed from the configuration can still be
    /// cancelled: those deliveries are withdrawn, and a reload that configures the destination again sends none.
    @Test func cancelWithdrawsStrandedDeliveries() throws {
        let (sink, first, _) = try Self.startWithFailingSink()
        defer { sink.shutdown() }
        let id = try #require(
            try ReplayTests.json(try ReplayTests.admin(first, "POST", "/admin/replays", body: #"{"portOut": "pout_other"}"#))["id"]?.stringValue)
        _ = try ReplayTests.waitForJob(first, id, status: "running")
        first.stop()

        let harness = try RelayHarness(tenantsJSON: RelayHarness.tenantsJSON(), directory: first.directory)
        defer { harness.finish() }
        let stranded = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)"))
        #expect(stranded["status"] == "completed")
        #expect(stranded["notConfigured"] == 1)
        let cancelled = try ReplayTests.json(try ReplayTests.admin(harness, "DELETE", "/admin/replays/\(id)"))
        #expect(cancelled["withdrawn"] == 1)
        #expect(cancelled["notConfigured"] == 0)
        #expect(cancelled["status"] == "cancelled")
        #expect(cancelled["finishedAt"] != .null)
        let report = harness.relay!.reload(
            try harness.config(tenantsJSON: RelayHarness.tenantsJSON(destinations: DeliveryTests.destination(sink.url))))
        #expect(report.destinations.added == ["t1/d1"])
        #expect(harness.relay!.deliveryStatistics().first?.pending == 0)
    }

    /// A reload that removes the destination a job waits on finishes the job as a start without it would, so that
    /// it no longer counts against the limit. A reload that adds the destination back sends the deliveries.
    @Test func reloadRemovingDestinationFinishesJob() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let (harness, _) = try Self.startWithDeliveries(sink)
        defer { harness.finish() }
        let id = try ReplayTests.startHeldReplay(harness, filter: #"{"portOut": "pout_cli"}"#)

        let without = try harness.config(tenantsJSON: RelayHarness.tenantsJSON())
        let with = try harness.config(tenantsJSON: RelayHarness.tenantsJSON(destinations: DeliveryTests.destination(sink.url)))
        // Removed twice, with the destination back in between: the deliveries count once.
        for config in [without, with, without] {
            _ = harness.relay!.reload(config)
        }
        let stranded = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)"))
        #expect(stranded["status"] == "completed")
        #expect(stranded["queued"] == 0)
        #expect(stranded["notConfigured"] == 3)

        _ = harness.relay!.reload(with)
        #expect(try ReplayTests.admin(harness, "POST", "/admin/destinations/t1/d1/resume").status == 200)
        #expect(waitUntil { (try? ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)")))?["delivered"] == 3 })
        let sent = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)"))
        #expect(sink.received.count == 7)
        #expect(sent["queued"] == 3)
        #expect(sent["delivered"] == 3)
        #expect(sent["notConfigured"] == 0)
    }

    /// An attempt in flight at the reload that removes its destination counts under `notConfigured` once it fails,
    /// as the waiting ones do, so its job completes instead of running until a restart.
    @Test func inFlightAttemptStrandedAfterReload() throws {
        let failing = Atomic<Bool>(true)
        let sink = try RecordingSink { index, _ in
            guard index > 0, failing.load(ordering: .relaxed) else { return .init(status: 204) }
            return .init(status: 500, delaySeconds: 1)
        }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_s", status: "initiated")).status == 202)
        #expect(waitUntil { sink.received.count == 1 })
        let started = try ReplayTests.json(try ReplayTests.admin(harness, "POST", "/admin/replays", body: #"{"portOut": "pout_s"}"#))
        let id = try #require(started["id"]?.stringValue)
        #expect(waitUntil { sink.received.count == 2 })

        let without = try harness.config(tenantsJSON: RelayHarness.tenantsJSON())
        #expect(harness.relay!.reload(without).destinations.strandedReplays.isEmpty)
        let stranded = try ReplayTests.waitForJob(harness, id, status: "completed")
        #expect(stranded["queued"] == 0)
        #expect(stranded["notConfigured"] == 1)

        failing.store(false, ordering: .relaxed)
        _ = harness.relay!.reload(try harness.config(tenantsJSON: RelayHarness.tenantsJSON(destinations: DeliveryTests.destination(sink.url))))
        #expect(waitUntil { (try? ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)")))?["delivered"] == 1 })
        let sent = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)"))
        #expect(sent["queued"] == 1)
        #expect(sent["notConfigured"] == 0)
        #expect(sink.received.count == 3)
        // The failure that settled while the destination was removed counts in its statistics too.
        let statistics = try #require(harness.relay!.deliveryStatistics().first)
        #expect(statistics.retries == 1)
        #expect(statistics.delivered == 2)
    }

    /// A job's stranded deliveries that go out after a reload count as queued again, and the job does not finish
    /// while its other deliveries still wait.
    @Test func strandedDeliveriesDoNotFinishJobEarly() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let both = RelayHarness.tenantsJSON(destinations: """
            [\(ReloadAndShutdownTests.destination("d1", url: sink.url)), \(ReloadAndShutdownTests.destination("d2", url: sink.url))]
            """)
        let harness = try RelayHarness(tenantsJSON: both)
        defer { harness.finish() }
        for status in ["initiated", "processing", "issued"] {
            #expect(try harness.post(Events.portOut("pout_two", status: status)).status == 202)
        }
        #expect(waitUntil { sink.received.count == 6 })
        #expect(try ReplayTests.admin(harness, "POST", "/admin/destinations/t1/d2/pause").status == 200)
        let id = try ReplayTests.startHeldReplay(harness, filter: #"{"portOut": "pout_two"}"#)
        let onlyFirst = RelayHarness.tenantsJSON(destinations: "[\(ReloadAndShutdownTests.destination("d1", url: sink.url))]")
        _ = harness.relay!.reload(try harness.config(tenantsJSON: onlyFirst))
        let stranded = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)"))
        #expect(stranded["queued"] == 3)
        #expect(stranded["notConfigured"] == 3)

        _ = harness.relay!.reload(try harness.config(tenantsJSON: both))
        #expect(try ReplayTests.admin(harness, "POST", "/admin/destinations/t1/d2/resume").status == 200)
        #expect(waitUntil { (try? ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)")))?["delivered"] == 3 })
        let halfway = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)"))
        #expect(halfway["status"] == "running")
        #expect(halfway["queued"] == 6)
        #expect(halfway["notConfigured"] == 0)

        #expect(try ReplayTests.admin(harness, "POST", "/admin/destinations/t1/d1/resume").status == 200)
        let finished = try ReplayTests.waitForJob(harness, id, status: "completed")
        #expect(finished["delivered"] == 6)
    }

    /// Run by root on a relay's data directory that a service user owns, an offline replay would leave files the
    /// relay cannot read, so it refuses.
    @Test(.enabled(if: getuid() == 0, "changing a directory's owner needs root"))
    func offlineReplayRefusesOtherUsersDirectory() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let (harness, configPath) = try Self.startWithDeliveries(sink)
        defer { harness.finish() }
        harness.stop()
        let dataDirectory = harness.directory.path + "/data"
        #expect(chown(dataDirectory, 65534, 65534) == 0)
        do {
            _ = try Self.run(["--offline", "--config", configPath, "--port-out", "pout_cli"])
            Issue.record("an offline replay wrote into another user's data directory")
        } catch let error as CommandError {
            #expect(error.description.hasPrefix("\(dataDirectory) belongs to user 65534"), "\(error)")
        }
        #expect(try Self.run(["--offline", "--config", configPath, "--port-out", "pout_cli", "--dry-run"]).status == 0)
    }

    /// Ctrl-C ends an offline replay's wait: the job is listed for the relay to finish, and the exit status is 130.
    @Test func interruptedOfflineReplayListsJob() throws {
        let (sink, harness, configPath) = try Self.startWithFailingSink()
        defer { sink.shutdown() }
        defer { harness.finish() }
        harness.stop()

        let outputPath = harness.directory.file("replay.out")
        let process = try Self.launch(
            RelayProcess.binary, ["replay", "--offline", "--config", configPath, "--port-out", "pout_cli", "--wait", "120"],
            outputPath: outputPath)
        defer { if process.isRunning { process.terminate() } }
        func output() -> String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }
        #expect(waitUntil(timeoutSeconds: 30) { output().contains("Ctrl-C ends the wait") }, "\(output())")

        kill(process.processIdentifier, SIGINT)
        #expect(waitUntil(timeoutSeconds: 30) { !process.isRunning })
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 130)
        #expect(output().contains("interrupted: listing the job"), "\(output())")
        let jobs = try ReplayJobFile(dataDirectory: harness.directory.path + "/data").load().jobs
        #expect(jobs.count == 1)
        #expect(jobs.first?.progress.withLock { $0.queued } == 3)
    }

    /// A Ctrl-C the moment an online replay blocks SIGINT, before libdispatch can have set up the source that
    /// takes it, neither kills the command nor leaves a job running: either no job is made, or it is cancelled.
    @Test func earlyInterruptLeavesNoJobRunning() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let (harness, configPath, url) = try Self.startPaused(sink)
        defer { harness.finish() }
        for start in 0..<3 {
            let process = try Self.launch(
                RelayProcess.binary, ["replay", "--config", configPath, "--admin-url", url, "--port-out", "pout_cli"],
                outputPath: harness.directory.file("replay-\(start).out"))
            defer { if process.isRunning { process.terminate() } }
            let pid = process.processIdentifier
            let blocked = waitUntil(timeoutSeconds: 30, pollSeconds: 0.0002) {
                ReloadAndShutdownTests.blockedSignals(pid: pid).map { $0 & ReloadAndShutdownTests.signalBit(SIGINT) != 0 } ?? false
            }
            #expect(blocked, "start \(start): the command never blocked SIGINT")
            kill(pid, SIGINT)
            #expect(waitUntil(timeoutSeconds: 30) { !process.isRunning }, "start \(start)")
            #expect(process.terminationReason == .exit, "start \(start)")
            #expect(process.terminationStatus == 130, "start \(start)")
        }
        // A cancelled scan reports its status once it has stopped.
        func statuses() -> [String] {
            let list = try? ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays"))
            return list?["data"]?.arrayValue?.compactMap { $0.objectValue?["status"]?.stringValue } ?? ["unreadable"]
        }
        #expect(waitUntil { statuses().allSatisfy { $0 == "cancelled" } }, "\(statuses())")
    }

    /// Starts an admin listener for `replay` that creates job `heldReplay` after `createDelaySeconds` and delays
    /// its response to the cancellation past the command's 10 s request timeout.
    static func holdingCancelAdmin(createDelaySeconds: Double = 0) throws -> RecordingSink {
        let job = Array(#"{"object":"replay","id":"\#(Self.heldReplay)","status":"running"}"#.utf8)
        return try RecordingSink { _, request in
            switch (request.method, request.path) {
            case ("POST", "/admin/replays"):
                return .init(status: 201, body: job, delaySeconds: createDelaySeconds)
            case ("DELETE", _):
                return .init(status: 200, body: Array(#"{"status":"cancelled"}"#.utf8), delaySeconds: 25)
            case (_, "/admin/destinations"):
                return .init(status: 200, body: Array(#"{"object":"list","data":[]}"#.utf8))
            default:
                return .init(status: 200, body: job)
            }
        }
    }

    static let heldReplay = "rpl_held"

    /// Starts `replay` for one port out against `admin`, with its standard output in the returned file.
    static func launchReplay(admin: RecordingSink, in directory: TemporaryDirectory) throws -> (Process, String) {
        let configPath = directory.file("config.json")
        let tenant = #"{"id": "t1", "projects": ["p"], "verify": {"secrets": ["\#(RelayHarness.inboundSecret)"]}}"#
        let config = #"{"dataDir": "\#(directory.file("data"))", "tenants": [\#(tenant)]}"#
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        let outputPath = directory.file("replay.out")
        let process = try Self.launch(
            RelayProcess.binary, ["replay", "--config", configPath, "--admin-url", admin.url, "--port-out", "pout_cli"],
            outputPath: outputPath)
        return (process, outputPath)
    }

    /// A second Ctrl-C exits at once, before the relay has responded to the cancellation that the first one sent,
    /// and prints that the replay may still run. A first Ctrl-C while the relay creates the job cancels the job
    /// once it exists, without following it meanwhile.
    @Test(arguments: [false, true])
    func secondInterruptSkipsCancelWait(duringCreate: Bool) throws {
        let admin = try Self.holdingCancelAdmin(createDelaySeconds: duringCreate ? 2 : 0)
        defer { admin.shutdown() }
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (process, outputPath) = try Self.launchReplay(admin: admin, in: directory)
        defer { if process.isRunning { process.terminate() } }
        func output() -> String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }
        if duringCreate {
            #expect(waitUntil(timeoutSeconds: 30) { admin.received.contains { $0.method == "POST" } })
        } else {
            #expect(waitUntil(timeoutSeconds: 30) { output().contains("Ctrl-C cancels it") }, "\(output())")
        }

        kill(process.processIdentifier, SIGINT)
        #expect(waitUntil(timeoutSeconds: 30) { admin.received.contains { $0.method == "DELETE" } })
        kill(process.processIdentifier, SIGINT)
        #expect(waitUntil(timeoutSeconds: 30) { !process.isRunning })
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 130)
        #expect(output().contains("cancelling replay \(Self.heldReplay)"), "\(output())")
        #expect(output().contains("replay \(Self.heldReplay) may still run"), "\(output())")
        #expect(!output().contains("not cancelled"), "\(output())")
        if duringCreate {
            #expect(!output().contains("started"), "\(output())")
            #expect(!admin.received.contains { $0.method == "GET" })
        }
    }

    /// A job file that cannot be copied, here because it is larger than the file size limit, is renamed aside
    /// instead, so that the save that follows does not drop its bad entry.
    @Test func uncopiableJobFileIsRenamedAside() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let (harness, configPath) = try Self.startWithDeliveries(sink)
        defer { harness.finish() }
        harness.stop()
        let path = ReplayJobFile(dataDirectory: harness.directory.path + "/data").path
        // The bad entry takes the file past the 1 MiB limit set below, while the good entry alone is far under it.
        let padding = String(repeating: "x", count: 1_500_000)
        let text = #"{"replays": [{"id": 7, "padding": ""# + padding + #""}, "# + ReplayRestartTests.goodEntry + "]}"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))

        let outputPath = harness.directory.file("replay.out")
        // SIGXFSZ is ignored, so that a write past the limit fails with EFBIG instead of ending the process.
        let process = try Self.launch(
            "/bin/bash",
            [
                "-c", #"trap "" XFSZ; ulimit -f 1024; exec "$0" "$@""#, RelayProcess.binary,
                "replay", "--offline", "--config", configPath, "--port-out", "pout_cli", "--wait", "20",
            ],
            outputPath: outputPath)
        #expect(waitUntil(timeoutSeconds: 60) { !process.isRunning })
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        #expect(process.terminationStatus == 0, "\(output)")
        #expect(output.contains("copying failed, so the file was renamed instead"), "\(output)")

        let copies = try ReplayRestartTests.copiesAside(harness)
        #expect(copies.count == 1)
        let copied = try String(contentsOfFile: harness.directory.path + "/data/" + (copies.first ?? ""), encoding: .utf8)
        #expect(copied == text)
        let jobs = try ReplayJobFile(dataDirectory: harness.directory.path + "/data").load()
        #expect(jobs.rejectedEntries.isEmpty)
        #expect(jobs.jobs.map(\.id).first == "rpl_good")
        #expect(jobs.jobs.count == 2)
    }

    @Test func offlineReplaySendsFromJournal() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let (harness, configPath) = try Self.startWithDeliveries(sink)
        defer { harness.finish() }
        do {
            _ = try Self.run(["--offline", "--config", configPath, "--port-out", "pout_cli"])
            Issue.record("an offline replay ran beside a running relay")
        } catch let error as CommandError {
            #expect(error.description.contains("replay through it without --offline"))
        }

        harness.stop()
        do {
            _ = try Self.run(["--offline", "--config", configPath, "--destination", "nosuch"])
            Issue.record("an offline replay to a destination that is not configured was accepted")
        } catch let error as CommandError {
            #expect(error.description == "destination nosuch is not configured")
        }
        let preview = try Self.run(["--offline", "--config", configPath, "--port-out", "pout_cli", "--dry-run"])
        #expect(preview.status == 0)
        #expect(preview.lines.first == "3 deliveries match")
        let result = try Self.run(["--offline", "--config", configPath, "--port-out", "pout_cli", "--wait", "20"])
        #expect(result.status == 0, "\(result.lines)")
        #expect(result.lines.contains { $0.hasPrefix("3/3 settled: 3 delivered") })
        let id = try #require(result.lines.last.flatMap { $0.hasPrefix("listed as ") ? $0.split(separator: " ")[2] : nil })
        #expect(sink.received.count == 7)
        #expect(sink.received.suffix(3).map(\.status) == ["initiated", "processing", "issued"])

        // The replayed deliveries were journaled as delivered, so the relay does not send them again.
        // (The journal's own pending deliveries go first, which the next test checks.)
        try harness.start()
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.count == 7)
        #expect(harness.relay!.deliveryStatistics().first?.pending == 0)
        let listed = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)"))
        #expect(listed["status"] == "completed")
        #expect(listed["delivered"] == 3)
        // The journal's records were read to find the matches: at least the three events.
        #expect((listed["scannedRecords"]?.numberValue ?? 0) >= 3)
    }

    /// A destination that returns 410 during an offline replay is named as disabled in the summary, since its
    /// deliveries then wait for a resume rather than for the relay's start.
    @Test func offlineReplayNamesDestinationDisabledDuringWait() throws {
        let gone = Atomic<Bool>(false)
        let sink = try RecordingSink { _, _ in gone.load(ordering: .relaxed) ? .init(status: 410) : .init(status: 204) }
        defer { sink.shutdown() }
        let (harness, configPath) = try Self.startWithDeliveries(sink)
        defer { harness.finish() }
        harness.stop()
        gone.store(true, ordering: .relaxed)
        let result = try Self.run(["--offline", "--config", configPath, "--port-out", "pout_cli", "--wait", "2"])
        #expect(result.lines.contains { $0.hasPrefix("destination t1/d1 is disabled") }, "\(result.lines)")
        #expect(result.lines.contains { $0.contains("those to a held destination once it is resumed") })
    }

    /// A dry run with the relay stopped names a targeted destination that an operator left paused.
    @Test func offlineDryRunNamesPausedDestination() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let (harness, configPath) = try Self.startWithDeliveries(sink)
        defer { harness.finish() }
        #expect(try AdminTests.admin(harness, "POST", "/admin/destinations/t1/d1/pause", token: nil).status == 200)
        harness.stop()
        let preview = try Self.run(["--offline", "--config", configPath, "--port-out", "pout_cli", "--dry-run"])
        #expect(preview.status == 0)
        #expect(preview.lines.contains(
            "destination t1/d1 is paused; its deliveries wait until it is resumed, after the relay starts"), "\(preview.lines)")
    }

    @Test func offlineReplayKeepsPendingOrder() throws {
        let failing = Atomic<Bool>(true)
        let sink = try RecordingSink { _, _ in .init(status: failing.load(ordering: .relaxed) ? 503 : 204) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url, retrySchedule: "[1]", maxAttempts: 50))
        defer { harness.finish() }
        for status in ["initiated", "processing", "issued", "completed"] {
            #expect(try harness.post(Events.portOut("pout_ord", status: status)).status == 202)
        }
        #expect(waitUntil { sink.received.count >= 1 })
        let configPath = harness.directory.file("config.json")
        try harness.configText.write(toFile: configPath, atomically: true, encoding: .utf8)
        harness.stop()
        let failedAttempts = sink.received.count
        failing.store(false, ordering: .relaxed)

        // Every status is still pending, so the replay queues nothing new and the pending ones keep their order.
        let result = try Self.run(["--offline", "--config", configPath, "--status", "completed", "--wait", "5"])
        #expect(result.lines.contains("no deliveries queued"), "\(result.lines)")
        #expect(result.lines.contains("1 delivery left out: the same event was still pending for the destination"))
        try harness.start()
        #expect(waitUntil { sink.received.count >= failedAttempts + 4 })
        let delivered = sink.received.dropFirst(failedAttempts).map(\.status)
        #expect(Array(delivered.prefix(4)) == ["initiated", "processing", "issued", "completed"])
    }

    @Test func onlineReplayReportsProgress() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let (harness, configPath) = try Self.startWithDeliveries(sink)
        defer { harness.finish() }
        let url = "http://127.0.0.1:\(harness.adminPort)"
        let result = try Self.run(["--config", configPath, "--admin-url", url, "--tenant", "t1", "--status", "initiated"])
        #expect(result.status == 0, "\(result.lines)")
        #expect(result.lines.first?.hasPrefix("replay rpl_") == true)
        #expect(result.lines.contains("2/2 settled: 2 delivered, 0 dead-lettered, 0 withdrawn"))
        #expect(result.lines.last?.hasSuffix(" completed") == true)
        #expect(waitUntil { sink.received.count == 6 })
        #expect(Set(sink.received.suffix(2).compactMap(\.portOut)) == ["pout_cli", "pout_other"])

        do {
            _ = try Self.run(["--config", configPath, "--admin-url", url, "--status", "lost"])
            Issue.record("an invalid status was accepted")
        } catch let error as UsageError {
            #expect(error.description.hasPrefix("--status must be one or more of"))
        }
    }


    /// A replay through the relay to a paused destination cannot end, so `--wait` stops following it and leaves
    /// the job running, where the command without it would wait until a resume.
    @Test func onlineReplayWaitLeavesJobRunning() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let (harness, configPath, url) = try Self.startPaused(sink)
        defer { harness.finish() }
        // A dry run names a held destination only when a match goes to it.
        let preview = try Self.run(["--config", configPath, "--admin-url", url, "--port-out", "pout_cli", "--dry-run"])
        #expect(preview.lines.contains { $0.hasPrefix("destination t1/d1 is paused") }, "\(preview.lines)")
        let nothing = try Self.run(["--config", configPath, "--admin-url", url, "--port-out", "pout_none", "--dry-run"])
        #expect(nothing.lines == ["0 deliveries match"])
        let result = try Self.run(["--config", configPath, "--admin-url", url, "--port-out", "pout_cli", "--wait", "1"])
        #expect(result.status == 1, "\(result.lines)")
        #expect(result.lines.contains { $0.hasPrefix("destination t1/d1 is paused") }, "\(result.lines)")
        let last = result.lines.last ?? ""
        #expect(last.contains("is still running after the --wait time"), "\(last)")
        let id = try #require(result.lines.first?.split(separator: " ").dropFirst().first.map(String.init))
        #expect(try ReplayTests.json(ReplayTests.admin(harness, "GET", "/admin/replays/\(id)"))["status"]?.stringValue == "running")

        #expect(try ReplayTests.admin(harness, "POST", "/admin/destinations/t1/d1/resume").status == 200)
        #expect(waitUntil {
            (try? ReplayTests.json(ReplayTests.admin(harness, "GET", "/admin/replays/\(id)")))?["status"]?.stringValue == "completed"
        })
        #expect(sink.received.count == 7)
    }

    /// An offline replay keeps the relay's saved jobs: it refuses to start past the limit of unfinished jobs,
    /// and it copies a file with bad entries aside before adding its job.
    @Test func offlineReplayKeepsSavedJobs() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let (harness, configPath) = try Self.startWithDeliveries(sink)
        defer { harness.finish() }
        harness.stop()
        let file = ReplayJobFile(dataDirectory: harness.directory.path + "/data")
        // Replays saved while scanning, which the relay's next start scans again, so they count as unfinished.
        let scanning = ReplayTests.restoreJobs(
            nil, statuses: [ReplayJob.Status](repeating: .scanning, count: AdminConfig().maxUnfinishedReplays))
        try file.save(scanning)
        do {
            _ = try Self.run(["--offline", "--config", configPath, "--port-out", "pout_cli"])
            Issue.record("an offline replay started past the limit of unfinished jobs")
        } catch let error as CommandError {
            #expect(error.description.hasPrefix("8 replays and redeliveries are unfinished"))
        }
        #expect(sink.received.count == 4)

        let good = ReplayRestartTests.goodEntry
        let text = #"{"replays": ["# + good + #", {"id": 7}]}"#
        try Data(text.utf8).write(to: URL(fileURLWithPath: file.path))
        let result = try Self.run(["--offline", "--config", configPath, "--port-out", "pout_cli", "--wait", "20"])
        #expect(result.status == 0, "\(result.lines)")
        #expect(result.lines.first { $0.contains("is not a complete job, so it is left out (file copied to") } != nil)
        let copies = try ReplayRestartTests.copiesAside(harness)
        #expect(copies.count == 1)
        #expect(try String(contentsOfFile: harness.directory.path + "/data/" + (copies.first ?? ""), encoding: .utf8) == text)
        let saved = try file.load()
        #expect(saved.jobs.count == 2)
        #expect(saved.jobs.first?.id == "rpl_good")
        #expect(saved.rejectedEntries.isEmpty)

        // `--wait 0` still waits for the deliveries to be queued, so the job is listed.
        let unwaited = try Self.run(["--offline", "--config", configPath, "--port-out", "pout_cli", "--wait", "0"])
        #expect(unwaited.lines.last?.hasPrefix("listed as ") == true, "\(unwaited.lines)")
        #expect(try file.load().jobs.count == 3)

        // An unreadable file is moved aside, as the relay's start does, and the job starts a new one.
        try Data(#"{"replays": ["#.utf8).write(to: URL(fileURLWithPath: file.path))
        let afterUnreadable = try Self.run(["--offline", "--config", configPath, "--port-out", "pout_cli", "--wait", "20"])
        let movedLine = afterUnreadable.lines.first { $0.contains("could not be read") }
        #expect(movedLine?.contains("it was moved to") == true)
        #expect(afterUnreadable.lines.last?.hasPrefix("listed as ") == true, "\(afterUnreadable.lines)")
        #expect(try file.load().jobs.count == 1)
        #expect(try ReplayRestartTests.copiesAside(harness).count == 2)
    }
}
