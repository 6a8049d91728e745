import Foundation
import PortoutCore
import PortoutJournal
import PortoutTestSupport
import Synchronization
import Testing

@testable import PortoutRelay

/// `POST /admin/destinations/{tenant}/{destination}/abandon`, which dead-letters what a held destination has waiting.
@Suite(.serialized)
struct AbandonTests {
    static let operations = #""operationalWebhook": {"url": "OPS/ops", "secret": "whsec_b3BzLXNlY3JldA=="}"#

    static func abandon(_ harness: RelayHarness, tenant: String = "t1", _ destination: String, body: String = "")
        throws -> LoopbackClient.Response
    {
        try ReplayTests.admin(harness, "POST", "/admin/destinations/\(tenant)/\(destination)/abandon", body: body)
    }

    static func deadLetters(_ harness: RelayHarness) throws -> [JSONObject] {
        let list = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/dead-letters?limit=200"))
        return list["data"]?.arrayValue?.compactMap(\.objectValue) ?? []
    }

    /// Destinations with the given ids that retry every 0.2 s, up to 100 attempts.
    static func destinations(_ ids: [String], url: String) -> String {
        let entries = ids.map { id in
            """
            {"id": "\(id)", "url": "\(url)/\(id)", "secret": "\(RelayHarness.outboundSecret)", "retrySchedule": [0.2],
             "jitter": 0, "maxAttempts": 100}
            """
        }
        return "[" + entries.joined(separator: ", ") + "]"
    }

    static func oldestPendingSegment(_ harness: RelayHarness) -> UInt64? {
        let found = Mutex<UInt64?>(nil)
        let done = DispatchSemaphore(value: 0)
        harness.relay!.engine.oldestPendingSegment { segment, _ in
            found.withLock { $0 = segment }
            done.signal()
        }
        done.wait()
        return found.withLock { $0 }
    }

    /// A paused destination's deliveries, retried and never tried alike, become dead letters with the reason,
    /// stay so across a restart, and go out in order when redelivered. Nothing reaches the operational webhook for
    /// them, and they are not counted as dead letters that gave up.
    @Test func abandonDeadLettersHeldDeliveries() throws {
        let failing = Atomic<Bool>(true)
        let sink = try RecordingSink { _, _ in .init(status: failing.load(ordering: .relaxed) ? 503 : 204) }
        defer { sink.shutdown() }
        let operations = try RecordingSink()
        defer { operations.shutdown() }
        let harness = try RelayHarness(
            destinations: Self.destinations(["d1"], url: sink.url),
            extra: Self.operations.replacingOccurrences(of: "OPS", with: operations.url))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_a", status: "initiated")).status == 202)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.retries ?? 0 >= 1 })

        let active = try Self.abandon(harness, "d1")
        #expect(active.status == 409)
        #expect(try ReplayTests.json(active)["code"] == "destinationActive")
        #expect(try AdminTests.admin(harness, "POST", "/admin/destinations/t1/d1/pause", token: nil).status == 200)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.inFlight == 0 })
        #expect(try harness.post(Events.portOut("pout_a", status: "processing")).status == 202)
        #expect(try harness.post(Events.portOut("pout_b", status: "initiated")).status == 202)
        let attemptsOfFirst = sink.received.filter { $0.portOut == "pout_a" }.count

        let response = try Self.abandon(harness, "d1", body: #"{"reason": "billing retired"}"#)
        #expect(response.status == 200)
        let abandonment = try ReplayTests.json(response)
        #expect(abandonment["abandoned"] == 3)
        #expect(abandonment["remaining"] == 0)
        #expect(abandonment["inFlight"] == 0)
        #expect(abandonment["configured"] == true)
        #expect(abandonment["reason"] == "abandoned by an operator: billing retired")

        let destination = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/destinations/t1/d1"))
        #expect(destination["queueDepth"] == 0)
        #expect(destination["abandoned"] == 3)
        #expect(destination["deadLettered"] == 0)
        #expect(destination["mode"] == "paused")
        let metrics = String(decoding: try ReplayTests.admin(harness, "GET", "/metrics").body, as: UTF8.self)
        #expect(metrics.contains(#"portout_delivery_abandoned_total{tenant="t1",destination="d1"} 3"#))
        #expect(metrics.contains(#"portout_dead_letters_total{tenant="t1",destination="d1"} 0"#))
        #expect(Self.oldestPendingSegment(harness) == nil)

        func checkListed() throws {
            let listed = try Self.deadLetters(harness)
            #expect(listed.map { $0["portOut"]?.stringValue } == ["pout_a", "pout_a", "pout_b"])
            #expect(listed.allSatisfy { $0["reason"] == "abandoned by an operator: billing retired" })
            #expect(listed.allSatisfy { $0["httpStatus"] == .null })
            #expect(listed.map { $0["attempts"]?.numberValue } == [Double(attemptsOfFirst), 0, 0])
        }
        try checkListed()
        try harness.restart()
        #expect(try JournalStatsTests.stats(harness.directory.path + "/data").0["unsettledDeliveries"] == 0)
        try checkListed()
        let history = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/deliveries?portOut=pout_b"))
        let delivery = try #require(history["data"]?.arrayValue?.first?.objectValue)
        #expect(delivery["state"] == "deadLettered")
        let step = try #require(delivery["steps"]?.arrayValue?.last?.objectValue)
        #expect(step["kind"] == "abandoned")
        #expect(step["attempts"] == 0)
        #expect(step["reason"] == "abandoned by an operator: billing retired")
        // The retried delivery keeps its attempt steps, and the abandonment follows them.
        let retried = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/deliveries?portOut=pout_a"))
        let first = try #require(retried["data"]?.arrayValue?.first?.objectValue)
        let kinds = (first["steps"]?.arrayValue ?? []).compactMap { $0.objectValue?["kind"]?.stringValue }
        #expect(kinds == Array(repeating: "attempt", count: attemptsOfFirst) + ["abandoned"])
        #expect(first["steps"]?.arrayValue?.last?.objectValue?["attempts"] == .number(Double(attemptsOfFirst)))

        failing.store(false, ordering: .relaxed)
        #expect(try AdminTests.admin(harness, "POST", "/admin/destinations/t1/d1/resume", token: nil).status == 200)
        let received = sink.received.count
        let redelivery = try ReplayTests.admin(
            harness, "POST", "/admin/dead-letters/redeliver", body: #"{"destination": "d1"}"#)
        #expect(redelivery.status == 202)
        #expect(waitUntil { sink.received.count == received + 3 })
        let redelivered = sink.received.dropFirst(received)
        #expect(redelivered.filter { $0.portOut == "pout_a" }.map(\.status) == ["initiated", "processing"])
        #expect(redelivered.filter { $0.portOut == "pout_b" }.map(\.status) == ["initiated"])
        #expect(waitUntil { (try? Self.deadLetters(harness).isEmpty) == true })
        // The operational webhook received the redelivery's event, and none for an abandoned delivery.
        #expect(waitUntil { operations.received.contains { $0.json?["type"]?.stringValue == "replay.finished" } })
        #expect(operations.received.allSatisfy { $0.json?["type"]?.stringValue != "deadLetter.created" })
    }

    /// An attempt in flight is left to settle. One that fails waits for a retry like any other, and a second
    /// request abandons it.
    @Test func abandonLeavesAttemptsInFlight() throws {
        let sink = try RecordingSink { _, _ in .init(status: 503, delaySeconds: 1) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destinations(["d1"], url: sink.url))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_f", status: "initiated")).status == 202)
        #expect(try harness.post(Events.portOut("pout_f", status: "processing")).status == 202)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.inFlight == 1 })
        #expect(try AdminTests.admin(harness, "POST", "/admin/destinations/t1/d1/pause", token: nil).status == 200)

        let first = try ReplayTests.json(try Self.abandon(harness, "d1"))
        #expect(first["abandoned"] == 1)
        #expect(first["remaining"] == 0)
        #expect(first["inFlight"] == 1)
        #expect(first["reason"] == "abandoned by an operator")
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.inFlight == 0 })
        #expect(harness.relay!.deliveryStatistics().first?.pending == 1)
        let second = try ReplayTests.json(try Self.abandon(harness, "d1", body: #"{"reason": "  "}"#))
        #expect(second["abandoned"] == 1)
        #expect(second["inFlight"] == 0)
        #expect(harness.relay!.deliveryStatistics().first?.pending == 0)
        #expect(harness.relay!.deliveryStatistics().first?.abandoned == 2)
        #expect(try Self.deadLetters(harness).map { $0["status"]?.stringValue } == ["initiated", "processing"])
        #expect(try Self.deadLetters(harness).map { $0["attempts"]?.numberValue } == [1, 0])

        let again = try ReplayTests.json(try Self.abandon(harness, "d1"))
        #expect(again["abandoned"] == 0)
        #expect(try Self.abandon(harness, "nowhere").status == 404)
        #expect(try Self.abandon(harness, tenant: "t9", "d1").status == 404)
        #expect(try Self.abandon(harness, "d1", body: #"{"reason": 7}"#).status == 422)
        #expect(try Self.abandon(harness, "d1", body: #"{"why": "x"}"#).status == 422)
        #expect(try ReplayTests.admin(harness, "GET", "/admin/destinations/t1/d1/abandon").status == 405)
    }

    /// Deliveries held for a destination that the configuration no longer names, at a start or after a reload,
    /// can be abandoned without a pause, and then hold no journal segment from retention.
    @Test func abandonHeldDeliveriesOfUnconfiguredDestinations() throws {
        let sink = try RecordingSink { _, _ in .init(status: 503) }
        defer { sink.shutdown() }
        let first = try RelayHarness(destinations: Self.destinations(["d1", "d2"], url: sink.url))
        #expect(try first.post(Events.portOut("pout_u", status: "initiated")).status == 202)
        #expect(try first.post(Events.portOut("pout_u", status: "processing")).status == 202)
        #expect(waitUntil { first.relay!.deliveryStatistics().allSatisfy { $0.retries >= 1 } })
        first.stop()

        // d1 is gone since this start, and a reload removes d2.
        let harness = try RelayHarness(destinations: Self.destinations(["d2"], url: sink.url), directory: first.directory)
        defer { harness.finish() }
        _ = harness.relay!.reload(try harness.config(tenantsJSON: RelayHarness.tenantsJSON()))
        // An attempt that was in flight at the reload settles, and none starts after it.
        #expect(waitUntil {
            (try? ReloadAndShutdownTests.unconfiguredDestinations(harness).map { $0["inFlight"]?.numberValue }) == [0, 0]
        })
        #expect(try ReloadAndShutdownTests.unconfiguredDestinations(harness).map { $0["queueDepth"]?.numberValue } == [2, 2])
        #expect(Self.oldestPendingSegment(harness) != nil)

        for destination in ["d1", "d2"] {
            let abandonment = try ReplayTests.json(try Self.abandon(harness, destination))
            #expect(abandonment["abandoned"] == 2)
            #expect(abandonment["configured"] == false)
        }
        #expect(try ReloadAndShutdownTests.unconfiguredDestinations(harness).isEmpty)
        #expect(Self.oldestPendingSegment(harness) == nil)
        let metrics = String(decoding: try ReplayTests.admin(harness, "GET", "/metrics").body, as: UTF8.self)
        #expect(!metrics.contains("portout_delivery_unconfigured_queue_depth{"))
        #expect(try Self.abandon(harness, "d1").status == 404)

        try harness.restart()
        #expect(try ReloadAndShutdownTests.unconfiguredDestinations(harness).isEmpty)
        #expect(waitUntil { (try? Self.deadLetters(harness).count) == 4 })
        let (summary, _) = try JournalStatsTests.stats(harness.directory.path + "/data")
        #expect(summary["unsettledDeliveries"] == 0)
    }
}
