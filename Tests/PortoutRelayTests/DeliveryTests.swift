import Foundation
import PortoutCore
import PortoutCrypto
import PortoutHTTP
import PortoutJournal
import PortoutTestSupport
import Synchronization
import Testing

@testable import PortoutDelivery
@testable import PortoutRelay

/// Delivery through real libcurl to a sink on loopback, with retry delays shortened to fractions of a second.
@Suite(.serialized)
struct DeliveryTests {
    static func destination(_ url: String, retrySchedule: String = "[0.2]", maxAttempts: Int = 4, extra: String = "")
        -> String
    {
        """
        [{"id": "d1", "url": "\(url)/hook", "secret": "\(RelayHarness.outboundSecret)",
          "retrySchedule": \(retrySchedule), "jitter": 0, "maxAttempts": \(maxAttempts)\(extra.isEmpty ? "" : ", " + extra)}]
        """
    }

    @Test func deliveryCarriesSignedHeaders() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url, extra: #""headers": {"X-Team": "billing"}"#))
        defer { harness.finish() }
        let body = Events.portOut("pout_h", status: "initiated")
        #expect(try harness.post(body).status == 202)
        #expect(waitUntil { sink.received.count == 1 })
        let delivery = try #require(sink.received.first)
        #expect(delivery.body == body)
        #expect(delivery.path == "/hook")
        #expect(delivery.headers["webhook-id"] == "evt_pout_h_initiated")
        #expect(delivery.headers["User-Agent"] == "portout-relay/\(RelayVersion.current)")
        #expect(delivery.headers["X-Team"] == "billing")
        #expect(delivery.headers["Content-Type"] == "application/json")
        let timestamp = try #require(delivery.headers["webhook-timestamp"])
        let expected = WebhookSignature.standardWebhooks(
            key: Secret(value: RelayHarness.outboundSecret, source: "test").keyBytes, id: "evt_pout_h_initiated",
            timestamp: timestamp, body: body)
        #expect(delivery.headers["webhook-signature"] == "v1,\(expected)")
    }

    /// During a rotation each delivery carries one signature per secret, newest first, so a receiver that checks
    /// with either secret accepts it.
    @Test func previousSecretsAddSignatures() throws {
        let previous = "whsec_cHJldmlvdXMtb3V0Ym91bmQtc2VjcmV0LTAx"
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url, extra: #""previousSecrets": ["\#(previous)"]"#))
        defer { harness.finish() }
        let body = Events.portOut("pout_rot", status: "initiated")
        #expect(try harness.post(body).status == 202)
        #expect(waitUntil { sink.received.count == 1 })
        let delivery = try #require(sink.received.first)
        let timestamp = try #require(delivery.headers["webhook-timestamp"])
        let signatures = try #require(delivery.headers["webhook-signature"]).split(separator: " ").map(String.init)
        let expected = [RelayHarness.outboundSecret, previous].map { secret in
            "v1," + WebhookSignature.standardWebhooks(
                key: Secret(value: secret, source: "test").keyBytes, id: "evt_pout_rot_initiated", timestamp: timestamp,
                body: body)
        }
        #expect(signatures == expected)
    }

    @Test func serverErrorThenSuccessRetries() throws {
        let sink = try RecordingSink { index, _ in .init(status: index < 2 ? 500 : 200) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_r", status: "initiated")).status == 202)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.delivered == 1 })
        #expect(sink.received.count == 3)
        #expect(Set(sink.received.map { $0.headers["webhook-id"] }) == ["evt_pout_r_initiated"])
        #expect(harness.relay!.deliveryStatistics().first?.retries == 2)
    }

    @Test func tooManyRequestsHonoursRetryAfter() throws {
        let sink = try RecordingSink { index, _ in
            index == 0 ? .init(status: 429, headers: [("Retry-After", "1")]) : .init(status: 204)
        }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_429", status: "initiated")).status == 202)
        #expect(waitUntil { sink.received.count == 2 })
        let gap = sink.received[1].atMs - sink.received[0].atMs
        // The retry schedule gives 0.2 s, and Retry-After requests 1 s.
        #expect(gap >= 950)
    }

    @Test func clientErrorDeadLetters() throws {
        let sink = try RecordingSink { _, _ in .init(status: 400) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_dead", status: "initiated")).status == 202)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.deadLettered == 1 })
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.count == 1)
        harness.stop()
        var lines: [String] = []
        try JournalCommands.dump(
            dataDirectory: harness.directory.path + "/data", bodies: false, deadLettersOnly: true) { lines.append($0) }
        #expect(lines.count == 1)
        let line = try JSONParser.parse(lines[0]).objectValue
        #expect(line?["httpStatus"] == .number(400))
        #expect(line?["error"] == "destination answered 400")
        #expect(line?["event"]?.objectValue?["event"] == "evt_pout_dead_initiated")
    }

    @Test func slowSinkTimesOutAndRetries() throws {
        let sink = try RecordingSink { index, _ in .init(status: 200, delaySeconds: index == 0 ? 3 : 0) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url, extra: #""timeoutMs": 300"#))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_slow", status: "initiated")).status == 202)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.delivered == 1 })
        #expect(sink.received.count == 2)
        #expect(harness.relay!.deliveryStatistics().first?.lastError?.contains("Timeout") == true)
    }

    @Test func laterStatusWaitsBehindFailingFirst() throws {
        // pout_a's first status fails twice; pout_b's statuses go through meanwhile.
        let failures = Atomic<Int>(0)
        let sink = try RecordingSink { _, received in
            if received.portOut == "pout_a" && received.status == "initiated"
                && failures.wrappingAdd(1, ordering: .relaxed).oldValue < 2
            {
                return .init(status: 503)
            }
            return .init(status: 204)
        }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: Self.destination(sink.url))
        defer { harness.finish() }
        for status in ["initiated", "processing", "issued", "completed"] {
            #expect(try harness.post(Events.portOut("pout_a", status: status)).status == 202)
            #expect(try harness.post(Events.portOut("pout_b", status: status)).status == 202)
        }
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.delivered == 8 })
        let delivered = sink.received
        let aOrder = delivered.filter { $0.portOut == "pout_a" }.map(\.status)
        let bOrder = delivered.filter { $0.portOut == "pout_b" }.map(\.status)
        #expect(aOrder == ["initiated", "initiated", "initiated", "processing", "issued", "completed"])
        #expect(bOrder == ["initiated", "processing", "issued", "completed"])
        // pout_b finished before pout_a's first status got through.
        let lastB = delivered.lastIndex { $0.portOut == "pout_b" }!
        let firstASuccess = delivered.indices.filter { delivered[$0].portOut == "pout_a" }[2]
        #expect(lastB < firstASuccess)
    }

    /// With three transfer threads, attempts run on several libcurl multi handles at once. Every event still
    /// arrives, each port out's statuses in order, and a failing first status still holds back the rest.
    @Test func transferThreadsKeepOrderPerPortOut() throws {
        let failures = Atomic<Int>(0)
        let sink = try RecordingSink { _, received in
            if received.portOut == "pout_t0" && received.status == "initiated"
                && failures.wrappingAdd(1, ordering: .relaxed).oldValue < 2
            {
                return .init(status: 503)
            }
            return .init(status: 204)
        }
        defer { sink.shutdown() }
        let harness = try RelayHarness(
            destinations: Self.destination(sink.url, extra: #""concurrency": 16"#),
            extra: #""delivery": {"transferThreads": 3}"#)
        defer { harness.finish() }
        let statuses = ["initiated", "processing", "issued", "completed"]
        let portOuts = (0..<30).map { "pout_t\($0)" }
        for status in statuses {
            for portOut in portOuts {
                #expect(try harness.post(Events.portOut(portOut, status: status)).status == 202)
            }
        }
        let expected = portOuts.count * statuses.count
        #expect(waitUntil(timeoutSeconds: 20) { harness.relay!.deliveryStatistics().first?.delivered == expected })
        let delivered = sink.received
        for portOut in portOuts {
            let order = delivered.filter { $0.portOut == portOut }.map(\.status)
            // The two refused attempts of pout_t0's first status come before anything else of it.
            let expectedOrder = portOut == "pout_t0" ? ["initiated", "initiated"] + statuses : statuses
            #expect(order == expectedOrder, "\(portOut)")
        }
    }

    @Test func sinkDownThenUp() throws {
        // Reserve a port, then free it so nothing listens there until the sink starts on it.
        let probe = try RecordingSink()
        let port = probe.port
        probe.shutdown()
        let harness = try RelayHarness(
            destinations: Self.destination("http://127.0.0.1:\(port)", maxAttempts: 40))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_down", status: "initiated")).status == 202)
        #expect(waitUntil { (harness.relay!.deliveryStatistics().first?.retries ?? 0) >= 2 })
        let sink = try RecordingSink(port: port)
        defer { sink.shutdown() }
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.delivered == 1 })
        #expect(sink.received.count == 1)
    }

    @Test func restartResumesWithAttemptCount() throws {
        let failing = Atomic<Bool>(true)
        let sink = try RecordingSink { _, _ in .init(status: failing.load(ordering: .relaxed) ? 503 : 204) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(
            destinations: Self.destination(sink.url, retrySchedule: "[0.3]", maxAttempts: 10))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_resume", status: "initiated")).status == 202)
        #expect(waitUntil { (harness.relay!.deliveryStatistics().first?.retries ?? 0) >= 2 })
        harness.stop()
        failing.store(false, ordering: .relaxed)
        let before = sink.received.count
        try harness.start()
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.delivered == 1 })
        #expect(sink.received.count == before + 1)
        harness.stop()
        var attempts: [Int] = []
        try JournalCommands.dump(dataDirectory: harness.directory.path + "/data", bodies: false, deadLettersOnly: false) {
            line in
            if let object = try? JSONParser.parse(line).objectValue, object["record"] == "attempt" {
                attempts.append(object["attempt"]?.intValue ?? 0)
            }
        }
        // Attempt numbers carry on across the restart instead of starting again at 1.
        #expect(attempts == Array(1...attempts.count))
        #expect(attempts.count == before + 1)
    }

    @Test func filtersChooseDestinations() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let destinations = """
            [{"id": "terminal", "url": "\(sink.url)/terminal", "secret": "\(RelayHarness.outboundSecret)",
              "statuses": ["completed", "failed", "expired"]},
             {"id": "all", "url": "\(sink.url)/all", "secret": "\(RelayHarness.outboundSecret)"},
             {"id": "stale", "url": "\(sink.url)/stale", "secret": "\(RelayHarness.outboundSecret)",
              "deliverStale": true, "statuses": ["processing"]}]
            """
        let harness = try RelayHarness(destinations: destinations)
        defer { harness.finish() }
        for status in ["initiated", "completed", "processing"] {
            #expect(try harness.post(Events.portOut("pout_f", status: status)).status == 202)
        }
        #expect(waitUntil { sink.received.count == 4 })
        Thread.sleep(forTimeInterval: 0.3)
        let byPath = Dictionary(grouping: sink.received, by: \.path).mapValues { $0.map(\.status) }
        #expect(byPath["/terminal"] == ["completed"])
        #expect(byPath["/all"] == ["initiated", "completed"])
        #expect(byPath["/stale"] == ["processing"])
    }

    /// The journal still completes writes after the engine stops, when a stop cut connections short, and the
    /// deliveries those submit are resumed by the next start instead of kept.
    @Test func submitAfterStopIsDropped() throws {
        let harness = try RelayHarness(destinations: Self.destination("http://127.0.0.1:9"))
        defer { harness.finish() }
        let engine = harness.relay!.engine
        harness.stop()
        let delivery = PendingDelivery(
            sequence: 1, eventID: "evt_1", tenant: "t1", destination: "d1", orderingKey: "pout_1",
            location: JournalLocation(segment: 1, offset: 8, length: 10), acceptedAtMs: 1)
        engine.submit([delivery])
        #expect(engine.inboxCount == 0)
    }
}
