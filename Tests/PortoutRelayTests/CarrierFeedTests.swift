import Foundation
import PortoutCore
import PortoutTestSupport
import Testing

@testable import PortoutRelay

/// The realistic carrier feed, signed by the independent `standardwebhooks` PyPI package (tools/feed.py) and
/// delivered to a sink that verifies signatures with the same package (tools/sink.py).
@Suite(.serialized)
struct CarrierFeedTests {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    static let feed = Bundle.module.path(forResource: "Data/carrier-feed", ofType: "jsonl")!
    static let expected = try! JSONParser.parse(
        Array(FileManager.default.contents(atPath: Bundle.module.path(forResource: "Data/carrier-feed.expected", ofType: "json")!)!)
    ).objectValue!

    /// Starts the relay with one destination pointing at a Python sink that records to `record`.
    static func start(_ directory: TemporaryDirectory, record: String) throws -> (RelayHarness, PythonProcess) {
        let destinations = """
            [{"id": "everything", "url": "http://127.0.0.1:PORT/everything", "secret": "\(RelayHarness.outboundSecret)"}]
            """
        // The sink reads destination secrets from a config file, so it gets one with the same destination.
        let sinkConfig = directory.file("sink-config.json")
        try #"{"tenants": [{"destinations": \#(destinations)}]}"#.write(toFile: sinkConfig, atomically: true, encoding: .utf8)
        let sink = try PythonProcess(script: Self.repositoryRoot + "/tools/sink.py", arguments: ["--config", sinkConfig, "--port", "0", "--record", record, "--quiet"])
        let line = sink.firstLine()
        let port = try #require(line.split(separator: ":").last.map(String.init))
        let harness = try RelayHarness(
            tenantsJSON: """
                [{"id": "gigs", "projects": ["acme-mobile", "brit-tel"],
                  "verify": {"secrets": ["\(RelayHarness.inboundSecret)"]},
                  "destinations": \(destinations.replacingOccurrences(of: "PORT", with: port))}]
                """, directory: directory)
        return (harness, sink)
    }

    static func feed(_ harness: RelayHarness, start: Int, count: Int? = nil) throws -> JSONObject {
        var arguments = [
            Self.feed, "--url", "http://127.0.0.1:\(harness.port)/webhooks/gigs", "--secret", RelayHarness.inboundSecret,
            "--quiet", "--start", String(start),
        ]
        if let count {
            arguments += ["--count", String(count)]
        }
        let output = try PythonProcess(script: Self.repositoryRoot + "/tools/feed.py", arguments: arguments).finish()
        return try #require(try JSONParser.parse(output.trimmingCharacters(in: .whitespacesAndNewlines)).objectValue)
    }

    static func recorded(_ path: String) -> [JSONObject] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONParser.parse(String($0)).objectValue }
    }

    /// Compares what the sink received with the expected forwarding: per port out, statuses in order.
    static func checkForwarded(_ deliveries: [JSONObject]) {
        #expect(deliveries.allSatisfy { $0["verified"] == .bool(true) })
        var forwarded: [String: [String]] = [:]
        var credentials = 0
        for delivery in deliveries {
            if let portOut = delivery["portOut"]?.stringValue, let status = delivery["status"]?.stringValue {
                forwarded[portOut, default: []].append(status)
            } else {
                credentials += 1
            }
        }
        let expected = Self.expected["forwarded"]!.objectValue!
        #expect(forwarded.count == expected.members.count)
        for (portOut, statuses) in expected.members {
            #expect(forwarded[portOut] == statuses.arrayValue!.map { $0.stringValue! }, "port out \(portOut)")
        }
        #expect(forwarded.values.reduce(0) { $0 + $1.count } == Self.expected["forwardedStatusEvents"]!.intValue!)
        #expect(credentials == Self.expected["credentialEvents"]!.intValue!)
    }

    @Test func wholeFeedMatchesExpected() throws {
        let directory = TemporaryDirectory()
        let record = directory.file("deliveries.jsonl")
        let (harness, sink) = try Self.start(directory, record: record)
        defer {
            harness.finish()
            sink.stop()
        }
        let summary = try Self.feed(harness, start: 0)
        #expect(summary["sent"]?.intValue == Self.expected["events"]!.intValue!)
        #expect(summary["duplicates"]?.intValue == Self.expected["duplicates"]!.intValue!)
        #expect(summary["stale"]?.intValue == Self.expected["stale"]!.intValue!)
        #expect(summary["rejected"]?.intValue == 0)
        let total = Self.expected["forwardedStatusEvents"]!.intValue! + Self.expected["credentialEvents"]!.intValue!
        #expect(waitUntil(timeoutSeconds: 20) { Self.recorded(record).count >= total })
        Thread.sleep(forTimeInterval: 0.3)
        Self.checkForwarded(Self.recorded(record))
    }

    @Test func restartHalfwayKeepsDedupeAndDeliveries() throws {
        let directory = TemporaryDirectory()
        let record = directory.file("deliveries.jsonl")
        let (harness, sink) = try Self.start(directory, record: record)
        defer {
            harness.finish()
            sink.stop()
        }
        let first = try Self.feed(harness, start: 0, count: 150)
        // Stopped at once: deliveries still in flight resume from the journal after the restart.
        try harness.restart()
        let second = try Self.feed(harness, start: 150)
        #expect(first["duplicates"]!.intValue! + second["duplicates"]!.intValue! == Self.expected["duplicates"]!.intValue!)
        #expect(first["stale"]!.intValue! + second["stale"]!.intValue! == Self.expected["stale"]!.intValue!)
        let total = Self.expected["forwardedStatusEvents"]!.intValue! + Self.expected["credentialEvents"]!.intValue!
        #expect(waitUntil(timeoutSeconds: 20) { Self.recorded(record).count >= total })
        Thread.sleep(forTimeInterval: 0.3)
        // At-least-once: a delivery in flight at the stop may arrive twice; the sink dedupes by webhook-id.
        var seen = Set<String>()
        let unique = Self.recorded(record).filter { seen.insert($0["webhookId"]?.stringValue ?? "").inserted }
        Self.checkForwarded(unique)
    }
}
