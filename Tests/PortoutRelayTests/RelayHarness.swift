import Foundation
import PortoutCore
import PortoutCrypto
import PortoutTestSupport
import Testing

@testable import PortoutRelay

/// A relay started in-process on a free loopback port, with its data directory in a temporary directory.
final class RelayHarness {
    static let inboundSecret = "whsec_dGVzdC1pbmJvdW5kLXNlY3JldC0wMDAwMDAwMDAw"
    static let outboundSecret = "whsec_dGVzdC1vdXRib3VuZC1zZWNyZXQtMDAwMDAwMDAw"

    let directory: TemporaryDirectory
    let configText: String
    private(set) var relay: Relay?

    /// Starts a relay whose `tenants` array is `tenantsJSON`; `extra` adds top-level members.
    init(tenantsJSON: String, extra: String = "", directory: TemporaryDirectory = TemporaryDirectory()) throws {
        self.directory = directory
        self.configText = Self.configText(tenantsJSON: tenantsJSON, extra: extra, directory: directory)
        try self.start()
    }

    static func configText(tenantsJSON: String, extra: String = "", directory: TemporaryDirectory) -> String {
        """
        {"listen": "127.0.0.1:0", "dataDir": "\(directory.path)/data", "logLevel": "error", "eventLoops": 2,
         \(extra.contains("\"admin\"") ? "" : #""admin": {"listen": "127.0.0.1:0"},"#)
         \(extra.isEmpty ? "" : extra + ",")
         "tenants": \(tenantsJSON)}
        """
    }

    /// Parses a configuration for this harness's directory, for reload tests.
    func config(tenantsJSON: String, extra: String = "") throws -> RelayConfig {
        let text = Self.configText(tenantsJSON: tenantsJSON, extra: extra, directory: self.directory)
        return try RelayConfig.parse(Array(text.utf8), file: "test", baseDirectory: self.directory.path)
    }

    /// One tenant `t1` with projects `acme-mobile` and `brit-tel` and the given destinations JSON array.
    convenience init(
        destinations: String = "[]", verify: String? = nil, tenantExtra: String = "", extra: String = "",
        directory: TemporaryDirectory = TemporaryDirectory()
    ) throws {
        try self.init(
            tenantsJSON: Self.tenantsJSON(destinations: destinations, verify: verify, tenantExtra: tenantExtra),
            extra: extra, directory: directory)
    }

    /// Returns the `tenants` array of the convenience initializer, for reloading a relay started with it.
    static func tenantsJSON(destinations: String = "[]", verify: String? = nil, tenantExtra: String = "") -> String {
        let verifyJSON = verify ?? #"{"secrets": ["\#(Self.inboundSecret)"]}"#
        return """
            [{"id": "t1", "projects": ["acme-mobile", "brit-tel"], "verify": \(verifyJSON),
              \(tenantExtra.isEmpty ? "" : tenantExtra + ",") "destinations": \(destinations)}]
            """
    }

    var config: RelayConfig {
        get throws {
            try RelayConfig.parse(Array(self.configText.utf8), file: "test", baseDirectory: self.directory.path)
        }
    }

    func start() throws {
        self.relay = try Relay(config: try self.config, logger: Logger(level: .error))
    }

    var port: Int {
        self.relay!.port
    }

    var adminPort: Int {
        self.relay!.adminPort
    }

    /// Stops the relay; without a grace period, connections and in-flight deliveries are cut off at once.
    func stop(graceSeconds: Int = 0) {
        self.relay?.shutdown(graceSeconds: graceSeconds)
        self.relay = nil
    }

    func restart() throws {
        self.stop()
        try self.start()
    }

    func finish() {
        self.stop()
        self.directory.remove()
    }

    func client() throws -> LoopbackClient {
        try LoopbackClient(port: self.port)
    }

    /// Posts `body` to the tenant's webhook URL, signed with Standard Webhooks headers unless `headers` is given.
    func post(
        _ body: [UInt8], tenant: String = "t1", query: String = "", headers: [(String, String)]? = nil,
        secret: String = RelayHarness.inboundSecret, messageID: String = "msg_test"
    ) throws -> LoopbackClient.Response {
        let client = try self.client()
        let signed = headers ?? Self.standardWebhooksHeaders(body, secret: secret, id: messageID)
        let response = client.request(
            "POST", "/webhooks/\(tenant)\(query)", headers: [("Content-Type", "application/json")] + signed, body: body)
        return try #require(response)
    }

    /// Returns the three Standard Webhooks headers for `body`. `timestampText`, when given, is sent and signed in
    /// place of `timestamp`'s digits.
    static func standardWebhooksHeaders(
        _ body: [UInt8], secret: String, id: String, timestamp: Int = Int(Date().timeIntervalSince1970),
        timestampText: String? = nil
    ) -> [(String, String)] {
        let key = Secret(value: secret, source: "test").keyBytes
        let text = timestampText ?? String(timestamp)
        let signature = WebhookSignature.standardWebhooks(key: key, id: id, timestamp: text, body: body)
        return [("webhook-id", id), ("webhook-timestamp", text), ("webhook-signature", "v1,\(signature)")]
    }
}

/// Builds carrier events for tests.
enum Events {
    static func portOut(_ id: String, status: String, eventID: String? = nil, project: String = "acme-mobile") -> [UInt8] {
        let type: String
        switch status {
        case "initiated": type = "com.gigs.portOut.created"
        default: type = "com.gigs.portOut.\(status)"
        }
        let completedAt = status == "completed" ? "\"2026-11-02T12:00:00Z\"" : "null"
        let text = """
            {"object":"event","id":"\(eventID ?? "evt_\(id)_\(status)")","type":"\(type)",\
            "datacontenttype":"application/json","project":"\(project)","source":"https://api.gigs.com",\
            "specversion":"1.0","time":"2026-11-02T09:38:11Z","version":"2024-12-20",\
            "data":\(String(decoding: self.bareObject(id, status: status, completedAt: completedAt), as: UTF8.self))}
            """
        return Array(text.utf8)
    }

    static func bareObject(_ id: String, status: String, completedAt: String = "null") -> [UInt8] {
        let text = """
            {"object":"portOut","id":"\(id)","behavior":"portOut","completedAt":\(completedAt),\
            "createdAt":"2026-11-02T08:47:00Z","expiredAt":null,"failureReason":null,"status":"\(status)",\
            "subscription":"sub_1","user":"usr_1"}
            """
        return Array(text.utf8)
    }
}
