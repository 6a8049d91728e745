import Foundation
import PortoutCore
import PortoutTestSupport
import Synchronization
import Testing

@testable import PortoutRelay

/// The carrier emulator on its own, through the relay's forwarding, and feeding the relay end to end.
@Suite(.serialized)
struct EmulatorTests {
    static let fullKey = "emulator-key-full-0123456789"
    static let limitedKey = "emulator-key-limited-0123456789"

    static func emulator(
        webhookURLs: [String] = [], faults: Double = 0, generated: Int = 0, configure: (inout EmulatorSettings) -> Void = { _ in }
    ) throws -> (CarrierEmulator, Int) {
        var settings = EmulatorSettings()
        settings.listen = ListenAddress(host: "127.0.0.1", port: 0)
        settings.projects = EmulatorSettings.parseProjects("acme-mobile,brit-tel:uk")!
        settings.apiKeys = EmulatorSettings.parseAPIKeys("\(Self.fullKey):credentials,\(Self.limitedKey)")!
        settings.webhookURLs = webhookURLs
        settings.webhookSecret = RelayHarness.inboundSecret
        settings.processingAfterSeconds = 0.2
        settings.issuedAfterSeconds = 0.4
        settings.finishAfterSeconds = 0.2
        settings.retryRate = faults
        settings.resendRate = faults
        settings.reorderRate = faults
        settings.generatedPortOuts = generated
        settings.rate = 50
        settings.seed = 42
        configure(&settings)
        let emulator = CarrierEmulator(settings: settings, logger: Logger(level: .error))
        let port = try emulator.start()
        return (emulator, port)
    }

    static func call(
        _ port: Int, _ method: String, _ target: String, key: String? = EmulatorTests.fullKey, body: String = ""
    ) throws -> LoopbackClient.Response {
        let client = try LoopbackClient(port: port)
        var headers = key.map { [("Authorization", "Bearer \($0)")] } ?? []
        if !body.isEmpty {
            headers.append(("Content-Type", "application/json"))
        }
        return try #require(client.request(method, target, headers: headers, body: Array(body.utf8)))
    }

    @Test func lifecycleAndErrorPaths() throws {
        let (emulator, port) = try Self.emulator()
        defer { emulator.shutdown() }
        #expect(try Self.call(port, "GET", "/projects/acme-mobile/portOuts", key: nil).status == 401)
        #expect(try Self.call(port, "GET", "/projects/nowhere/portOuts").status == 404)
        let invalid = try Self.call(port, "POST", "/projects/acme-mobile/portOuts", body: #"{"behavior":"teleport"}"#)
        #expect(invalid.status == 422)
        let invalidFields = Set(invalid.json?.objectValue?["details"]?.arrayValue?.compactMap { $0.objectValue?["field"]?.stringValue } ?? [])
        #expect(invalidFields == ["subscription", "behavior"])
        let notUK = try Self.call(port, "POST", "/projects/acme-mobile/portOuts", body: #"{"subscription":"sub_1","behavior":"cancelOnly"}"#)
        #expect(notUK.status == 422)

        let created = try Self.call(port, "POST", "/projects/acme-mobile/portOuts", body: #"{"subscription":"sub_1"}"#)
        #expect(created.status == 201)
        let id = try #require(created.json?.objectValue?["id"]?.stringValue)
        #expect(created.json?.objectValue?["status"] == "initiated")
        let early = try Self.call(port, "GET", "/projects/acme-mobile/portOuts/\(id)/credentials")
        #expect(early.status == 422)
        #expect(waitUntil { (try? Self.call(port, "GET", "/projects/acme-mobile/portOuts/\(id)"))?.json?.objectValue?["status"] == "issued" })
        #expect(try Self.call(port, "GET", "/projects/acme-mobile/portOuts/\(id)/credentials", key: Self.limitedKey).status == 403)
        let credentials = try Self.call(port, "GET", "/projects/acme-mobile/portOuts/\(id)/credentials")
        #expect(credentials.status == 200)
        #expect(credentials.json?.objectValue?["object"] == "portOutCredentials")
        #expect(credentials.json?.objectValue?["portOut"]?.stringValue == id)
        #expect(credentials.json?.objectValue?["accountPin"]?.stringValue?.count == 6)
        let completed = try Self.call(port, "POST", "/testing/projects/acme-mobile/portOuts/\(id)/simulate")
        #expect(completed.json?.objectValue?["status"] == "completed")
        #expect(completed.json?.objectValue?["completedAt"]?.stringValue != nil)
        #expect(try Self.call(port, "POST", "/projects/acme-mobile/portOuts/\(id)/expire").status == 422)
        #expect(try Self.call(port, "GET", "/projects/acme-mobile/portOuts/\(id)/credentials").status == 422)

        let second = try Self.call(port, "POST", "/projects/acme-mobile/portOuts", body: #"{"subscription":"sub_2"}"#)
        let secondID = try #require(second.json?.objectValue?["id"]?.stringValue)
        let expired = try Self.call(port, "POST", "/projects/acme-mobile/portOuts/\(secondID)/expire")
        #expect(expired.status == 200)
        #expect(expired.json?.objectValue?["status"] == "expired")
        // Timers that fire after the expiry leave the port out alone.
        Thread.sleep(forTimeInterval: 0.6)
        #expect(try Self.call(port, "GET", "/projects/acme-mobile/portOuts/\(secondID)").json?.objectValue?["status"] == "expired")

        let uk = try Self.call(port, "POST", "/projects/brit-tel/portOuts", body: #"{"subscription":"sub_3","behavior":"cancelOnly"}"#)
        #expect(uk.status == 201)
        let ukID = try #require(uk.json?.objectValue?["id"]?.stringValue)
        #expect(waitUntil { (try? Self.call(port, "GET", "/projects/brit-tel/portOuts/\(ukID)"))?.json?.objectValue?["status"] == "completed" })
        // A cancelOnly port out is never issued, so it never has credentials.
        #expect(try Self.call(port, "GET", "/projects/brit-tel/portOuts/\(ukID)/credentials").status == 422)
        let list = try Self.call(port, "GET", "/projects/acme-mobile/portOuts?status=completed,expired")
        #expect(list.json?.objectValue?["items"]?.arrayValue?.count == 2)
    }

    /// The emulator signs under each scheme the relay verifies, so a tenant on any scheme can use it.
    @Test(arguments: [SignatureScheme.timestampedHex, .hex])
    func webhooksSignedUnderHexSchemes(_ scheme: SignatureScheme) throws {
        let harness = try RelayHarness(
            tenantsJSON: """
                [{"id": "gigs", "projects": ["acme-mobile"],
                  "verify": {"scheme": "\(scheme.rawValue)", "header": "X-Carrier-Signature", "secrets": ["hex-scheme-secret"]}}]
                """)
        defer { harness.finish() }
        let (emulator, port) = try Self.emulator(webhookURLs: ["http://127.0.0.1:\(harness.port)/webhooks/gigs"]) {
            $0.webhookScheme = scheme
            $0.webhookSignatureHeader = "X-Carrier-Signature"
            $0.webhookSecret = "hex-scheme-secret"
        }
        defer { emulator.shutdown() }
        #expect(try Self.call(port, "POST", "/projects/acme-mobile/portOuts", body: #"{"subscription":"sub_h"}"#).status == 201)
        #expect(waitUntil { emulator.statistics().webhooksSent >= 3 })
        #expect(emulator.statistics().webhooksFailed == 0)
        let stats = try JournalCommandsProbe.events(harness)
        #expect(stats >= 3)
    }

    @Test func settingsRejectMalformedLists() {
        #expect(EmulatorSettings.parseProjects(":") == nil)
        #expect(EmulatorSettings.parseProjects(",") == nil)
        #expect(EmulatorSettings.parseProjects("a:eu") == nil)
        #expect(EmulatorSettings.parseProjects("a,b:uk")?.map(\.isUnitedKingdom) == [false, true])
        #expect(EmulatorSettings.parseAPIKeys(",:") == nil)
        #expect(EmulatorSettings.parseAPIKeys("k:admin") == nil)
        #expect(EmulatorSettings.parseAPIKeys("k:credentials")?.first?.mayReadCredentials == true)
    }

    @Test func relayForwardsWriteCalls() throws {
        let (emulator, emulatorPort) = try Self.emulator()
        defer { emulator.shutdown() }
        let readKey = "relay-read-key-0123456789"
        let harness = try RelayHarness(
            tenantsJSON: """
                [{"id": "t1", "projects": ["acme-mobile"], "apiKeys": ["\(readKey)"],
                  "verify": {"secrets": ["\(RelayHarness.inboundSecret)"]},
                  "upstream": {"baseUrl": "http://127.0.0.1:\(emulatorPort)", "apiKey": "\(Self.fullKey)"}},
                 {"id": "t2", "projects": ["brit-tel"], "apiKeys": ["relay-read-key-t2-0123456789"],
                  "verify": {"secrets": ["\(RelayHarness.inboundSecret)"]}}]
                """)
        defer { harness.finish() }
        let created = try Self.call(harness.port, "POST", "/projects/acme-mobile/portOuts", key: readKey, body: #"{"subscription":"sub_f"}"#)
        #expect(created.status == 201)
        let id = try #require(created.json?.objectValue?["id"]?.stringValue)
        // The carrier's 422 comes back unchanged.
        let invalid = try Self.call(harness.port, "POST", "/projects/acme-mobile/portOuts", key: readKey, body: "{}")
        #expect(invalid.status == 422)
        #expect(invalid.json?.objectValue?["details"]?.arrayValue?.first?.objectValue?["field"] == "subscription")
        #expect(waitUntil { (try? Self.call(emulatorPort, "GET", "/projects/acme-mobile/portOuts/\(id)"))?.json?.objectValue?["status"] == "issued" })
        let credentials = try Self.call(harness.port, "GET", "/projects/acme-mobile/portOuts/\(id)/credentials", key: readKey)
        #expect(credentials.status == 200)
        #expect(credentials.json?.objectValue?["object"] == "portOutCredentials")
        let simulated = try Self.call(harness.port, "POST", "/testing/projects/acme-mobile/portOuts/\(id)/simulate", key: readKey)
        #expect(simulated.json?.objectValue?["status"] == "completed")
        #expect(try Self.call(harness.port, "POST", "/projects/acme-mobile/portOuts/\(id)/expire", key: readKey).status == 422)
        #expect(try Self.call(harness.port, "POST", "/projects/acme-mobile/portOuts", key: nil, body: "{}").status == 401)
        // Tenant t2 has no upstream: 501.
        let unconfigured = try Self.call(harness.port, "POST", "/projects/brit-tel/portOuts", key: "relay-read-key-t2-0123456789", body: "{}")
        #expect(unconfigured.status == 501)
        // Upstream down: 502.
        emulator.shutdown()
        let down = try Self.call(harness.port, "GET", "/projects/acme-mobile/portOuts/\(id)/credentials", key: readKey)
        #expect(down.status == 502)
        #expect(down.json?.objectValue?["code"] == "upstreamUnreachable")
    }

    /// Generated port outs with duplicate, resent and reordered webhooks: the relay forwards each port out's
    /// statuses in lifecycle order, each once, ending at the emulator's final status.
    @Test func generatedFeedWithFaultsEndToEnd() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try RelayHarness(
            tenantsJSON: """
                [{"id": "gigs", "projects": ["acme-mobile", "brit-tel"],
                  "verify": {"secrets": ["\(RelayHarness.inboundSecret)"]},
                  "destinations": [{"id": "all", "url": "\(sink.url)/all", "secret": "\(RelayHarness.outboundSecret)",
                                    "types": ["com.gigs.portOut.created", "com.gigs.portOut.processing", "com.gigs.portOut.issued",
                                              "com.gigs.portOut.completed", "com.gigs.portOut.expired", "com.gigs.portOut.failed"]}]}]
                """)
        defer { harness.finish() }
        let (emulator, emulatorPort) = try Self.emulator(
            webhookURLs: ["http://127.0.0.1:\(harness.port)/webhooks/gigs"], faults: 0.15, generated: 40)
        defer { emulator.shutdown() }
        #expect(waitUntil(timeoutSeconds: 30) {
            let statistics = emulator.statistics()
            return statistics.portOuts == 40 && statistics.webhooksPending == 0 && Self.terminalCount(emulatorPort) == 40
        })
        #expect(emulator.statistics().webhooksFailed == 0)
        Thread.sleep(forTimeInterval: 1)
        var delivered: [String: [String]] = [:]
        for received in sink.received {
            if let portOut = received.portOut, let status = received.status {
                delivered[portOut, default: []].append(status)
            }
        }
        #expect(delivered.count == 40)
        for (portOut, statuses) in delivered {
            let ranks = statuses.compactMap { PortOutStatus(rawValue: $0)?.rank }
            #expect(ranks == ranks.sorted() && Set(ranks).count == ranks.count, "\(portOut): \(statuses)")
            let final = try Self.call(emulatorPort, "GET", "/projects/\(Self.project(of: portOut, emulatorPort))/portOuts/\(portOut)")
            #expect(statuses.last == final.json?.objectValue?["status"]?.stringValue, "\(portOut): \(statuses)")
        }
    }

    static func terminalCount(_ port: Int) -> Int {
        ["acme-mobile", "brit-tel"].reduce(0) { total, project in
            let list = try? Self.call(port, "GET", "/projects/\(project)/portOuts?status=completed,expired,failed&limit=200")
            return total + (list?.json?.objectValue?["items"]?.arrayValue?.count ?? 0)
        }
    }

    static func project(of portOut: String, _ port: Int) throws -> String {
        (try? Self.call(port, "GET", "/projects/acme-mobile/portOuts/\(portOut)"))?.status == 200 ? "acme-mobile" : "brit-tel"
    }

    @Test func forwardingRejectsOddPathsAndResponses() throws {
        let upstream = try RecordingSink { _, received in
            switch received.path {
            case let path where path.hasSuffix("/odd-status/expire"): return .init(status: 999)
            case let path where path.hasSuffix("/huge/expire"):
                return .init(status: 200, headers: [("Content-Type", "application/json")], body: [UInt8](repeating: 32, count: 2 << 20))
            default: return .init(status: 200, headers: [("Content-Type", "application/json")], body: Array("{}".utf8))
            }
        }
        defer { upstream.shutdown() }
        let readKey = "relay-read-key-0123456789"
        let harness = try RelayHarness(
            tenantsJSON: """
                [{"id": "t1", "projects": ["pa"], "apiKeys": ["\(readKey)"],
                  "verify": {"secrets": ["\(RelayHarness.inboundSecret)"]},
                  "upstream": {"baseUrl": "\(upstream.url)", "apiKey": "upstream-key-0123456789"}}]
                """)
        defer { harness.finish() }
        for target in ["/projects/pa/portOuts/../expire", "/projects/pa/portOuts/a%2Fb/expire", "/projects/pa/portOuts/%2E%2E/expire"] {
            #expect(try Self.call(harness.port, "POST", target, key: readKey).status == 404, "\(target)")
        }
        #expect(try Self.call(harness.port, "POST", "/projects/pa/portOuts/a%20b/expire", key: readKey).status == 200)
        #expect(upstream.received.last?.path == "/projects/pa/portOuts/a%20b/expire")
        #expect(upstream.received.last?.headers["Authorization"] == "Bearer upstream-key-0123456789")
        #expect(try Self.call(harness.port, "POST", "/projects/pa/portOuts/odd-status/expire", key: readKey).status == 502)
        #expect(try Self.call(harness.port, "POST", "/projects/pa/portOuts/huge/expire", key: readKey).status == 502)
        let head = try LoopbackClient(port: harness.port)
        head.send("HEAD /projects/pa/portOuts/x/credentials HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(readKey)\r\n\r\n")
        let headResponse = head.readResponse(hasBody: false)
        #expect(headResponse?.status == 200)
        #expect(upstream.received.last?.path == "/projects/pa/portOuts/x/credentials")
    }
}

/// Counts the events a relay journaled, through the offline dump command.
enum JournalCommandsProbe {
    static func events(_ harness: RelayHarness) throws -> Int {
        var count = 0
        try JournalCommands.dump(dataDirectory: harness.directory.path + "/data", bodies: false, deadLettersOnly: false) {
            if $0.contains(#""record":"event""#) { count += 1 }
        }
        return count
    }
}
