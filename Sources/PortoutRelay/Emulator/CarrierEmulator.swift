import Dispatch
import Foundation
import PortoutCore
import PortoutCrypto
import PortoutDelivery
import PortoutHTTP

/// `portout-relay emulate`: the carrier's Port Out API, runnable on loopback.
///
/// Port outs move through their lifecycle on timers, and every status change is sent as a signed CloudEvent to
/// the configured webhook URLs, retried on failure as a carrier does, with optional duplicate, resent and
/// reordered deliveries. It can also create port outs on its own, as a realistic feed and load generator.
///
/// Thread-safety: all state lives on `queue`; HTTP handlers hop onto it and respond from there.
public final class CarrierEmulator: Sendable {
    let settings: EmulatorSettings
    let logger: Logger
    let queue = DispatchQueue(label: "carrier-emulator")
    let state: EmulatorState
    let client: HTTPClient
    private let server: HTTPServer
    private let handler: EmulatorRequestHandler
    private let webhookKey: [UInt8]

    public init(settings: EmulatorSettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
        self.state = EmulatorState(seed: settings.seed)
        self.client = HTTPClient(name: "emulator-webhooks")
        self.webhookKey = Secret(value: settings.webhookSecret, source: "emulator").keyBytes
        var limits = Limits()
        limits.maxBodyBytes = 64 * 1024
        self.handler = EmulatorRequestHandler()
        self.server = HTTPServer(
            configuration: HTTPServer.Configuration(
                host: settings.listen.host, port: settings.listen.port, eventLoops: 1, limits: limits),
            handler: self.handler, logger: logger)
    }

    /// Starts listening and, if asked, generating port outs; returns the bound port.
    @discardableResult
    public func start() throws -> Int {
        self.handler.attach(self)
        let port = try self.server.start()
        self.logger.info(
            "emulator started",
            ["listen": .string("\(self.settings.listen.host):\(port)"),
             "webhookURLs": .array(self.settings.webhookURLs.map { .string($0) })])
        if self.settings.generatedPortOuts > 0 {
            self.generate(remaining: self.settings.generatedPortOuts, index: 0)
        }
        return port
    }

    public func shutdown() {
        self.server.shutdown()
        self.handler.attach(nil)
        self.queue.sync { self.state.isStopped = true }
        self.client.shutdown()
        self.logger.info("emulator stopped", [:])
    }

    /// Counts of what the emulator did, for tests and the load generator's report.
    public func statistics() -> (portOuts: Int, webhooksSent: Int, webhooksFailed: Int, webhooksPending: Int) {
        self.queue.sync {
            (self.state.portOuts.count, self.state.webhooksSent, self.state.webhooksFailed, self.state.webhooksPending)
        }
    }

    // MARK: Lifecycle (on `queue`)

    private func generate(remaining: Int, index: Int) {
        guard remaining > 0 else { return }
        self.queue.async {
            let project = self.settings.projects[index % self.settings.projects.count]
            let behavior = project.isUnitedKingdom && self.state.random.chance(0.2) ? "cancelOnly" : "portOut"
            let portOut = self.createPortOut(
                project: project.id, subscription: "sub_" + self.state.random.identifier(), behavior: behavior,
                generated: true)
            self.logger.debug("port out generated", ["portOut": .string(portOut.id), "project": .string(project.id)])
        }
        let interval = 1 / max(self.settings.rate, 0.001)
        self.queue.asyncAfter(deadline: .now() + interval) {
            self.generate(remaining: remaining - 1, index: index + 1)
        }
    }

    /// Creates a port out in `initiated` and schedules its next statuses. Call on `queue`.
    func createPortOut(project: String, subscription: String, behavior: String, generated: Bool) -> PortOut {
        let now = Int64(Date().timeIntervalSince1970)
        let portOut = PortOut(
            id: "pout_" + self.state.random.identifier(), behavior: behavior, completedAt: nil,
            createdAt: RFC3339.format(epochSeconds: now), expiredAt: nil, failureReason: nil, status: .initiated,
            subscription: subscription, user: "usr_" + self.state.random.identifier())
        self.state.insert(portOut, project: project, createdAtMs: now * 1000)
        self.emit(portOut, project: project)
        self.queue.asyncAfter(deadline: .now() + self.settings.processingAfterSeconds) {
            self.advance(portOut.id, from: [.initiated], to: .processing)
        }
        self.queue.asyncAfter(deadline: .now() + self.settings.issuedAfterSeconds) {
            if behavior == "cancelOnly" {
                // A cancelOnly port out ends the service without moving the number, so it is never issued.
                self.advance(portOut.id, from: [.initiated, .processing], to: .completed)
                return
            }
            self.advance(portOut.id, from: [.initiated, .processing], to: .issued)
            guard generated else { return }
            self.queue.asyncAfter(deadline: .now() + self.settings.finishAfterSeconds) {
                let roll = self.state.random.unit()
                let terminal: PortOutStatus = roll < 0.8 ? .completed : (roll < 0.9 ? .expired : .failed)
                self.advance(portOut.id, from: [.issued], to: terminal)
            }
        }
        return portOut
    }

    /// Moves a port out to `status` if it is in one of `from`, and sends the event. Call on `queue`.
    @discardableResult
    func advance(_ id: String, from: Set<PortOutStatus>, to status: PortOutStatus) -> PortOut? {
        guard var stored = self.state.portOuts[id], from.contains(stored.portOut.status) else { return nil }
        let now = RFC3339.format(epochSeconds: Int64(Date().timeIntervalSince1970))
        stored.portOut.status = status
        switch status {
        case .completed: stored.portOut.completedAt = now
        case .expired: stored.portOut.expiredAt = now
        case .failed: stored.portOut.failureReason = "consentNotGiven"
        default: break
        }
        self.state.portOuts[id] = stored
        self.emit(stored.portOut, project: stored.project)
        if status == .issued {
            let credentials = EmulatorState.Credentials(
                accountNumber: self.state.random.digits(10), accountPin: self.state.random.digits(6))
            self.state.credentials[id] = credentials
            self.emitCredentials(credentials, portOut: stored.portOut, project: stored.project)
        }
        return stored.portOut
    }

    // MARK: Webhooks (on `queue`)

    private func emit(_ portOut: PortOut, project: String) {
        self.send(type: portOut.status.eventType, project: project, data: portOut.jsonValue)
    }

    private func emitCredentials(_ credentials: EmulatorState.Credentials, portOut: PortOut, project: String) {
        let expiresAt = RFC3339.format(epochSeconds: Int64(Date().timeIntervalSince1970) + 30 * 86_400)
        // Events never carry the PIN: only the credentials endpoint returns it.
        let data: JSONValue = [
            "object": "portOutCredentials", "accountNumber": .string(credentials.accountNumber), "accountPin": nil,
            "expiresAt": .string(expiresAt), "subscription": .string(portOut.subscription),
        ]
        self.send(type: CarrierEventType.credentialsIssued, project: project, data: data)
    }

    private func send(type: String, project: String, data: JSONValue) {
        let eventID = "evt_" + self.state.random.identifier()
        let body = Self.envelope(id: eventID, type: type, project: project, data: data)
        let delay = self.state.random.chance(self.settings.reorderRate) ? self.settings.issuedAfterSeconds + 1 : 0
        for url in self.settings.webhookURLs {
            self.deliver(body, id: eventID, to: url, attempt: 1, after: delay)
            if self.state.random.chance(self.settings.retryRate) {
                self.deliver(body, id: eventID, to: url, attempt: 1, after: delay + 0.05)
            }
            if self.state.random.chance(self.settings.resendRate) {
                let resentID = "evt_" + self.state.random.identifier()
                let resent = Self.envelope(id: resentID, type: type, project: project, data: data)
                self.deliver(resent, id: resentID, to: url, attempt: 1, after: delay + 0.1)
            }
        }
    }

    static func envelope(id: String, type: String, project: String, data: JSONValue) -> [UInt8] {
        JSONWriter.encode([
            "object": "event", "id": .string(id), "type": .string(type), "datacontenttype": "application/json",
            "project": .string(project), "source": "https://api.gigs.com", "specversion": "1.0",
            "time": .string(RFC3339.format(epochSeconds: Int64(Date().timeIntervalSince1970))),
            "version": "2024-12-20", "data": data,
        ])
    }

    private func deliver(_ body: [UInt8], id: String, to url: String, attempt: Int, after delay: Double) {
        self.state.webhooksPending += 1
        self.queue.asyncAfter(deadline: .now() + delay) {
            guard !self.state.isStopped else { return }
            let request = HTTPClient.Request(
                method: "POST", url: url, headers: [("Content-Type", "application/json")] + self.signatureHeaders(id: id, body: body),
                body: body, timeoutMs: 10_000)
            self.client.send(request) { result in
                self.queue.async {
                    self.settle(body, id: id, url: url, attempt: attempt, result: result)
                }
            }
        }
    }

    /// Signs a webhook under the configured scheme, as a carrier using that scheme would.
    private func signatureHeaders(id: String, body: [UInt8]) -> [(name: String, value: String)] {
        let timestamp = String(Int(Date().timeIntervalSince1970))
        switch self.settings.webhookScheme {
        case .standardWebhooks:
            let signature = WebhookSignature.standardWebhooks(key: self.webhookKey, id: id, timestamp: timestamp, body: body)
            return [("webhook-id", id), ("webhook-timestamp", timestamp), ("webhook-signature", "v1,\(signature)")]
        case .timestampedHex:
            let mac = WebhookSignature.timestamped(key: self.webhookKey, timestamp: timestamp, body: body)
            return [(self.settings.webhookSignatureHeader, "t=\(timestamp),v1=\(ByteEncoding.hex(mac))")]
        case .hex:
            let mac = WebhookSignature.plain(key: self.webhookKey, body: body)
            return [(self.settings.webhookSignatureHeader, "sha256=\(ByteEncoding.hex(mac))")]
        }
    }

    private func settle(
        _ body: [UInt8], id: String, url: String, attempt: Int,
        result: Result<HTTPClient.Response, HTTPClient.TransportError>
    ) {
        self.state.webhooksPending -= 1
        let failure: String
        switch result {
        case .success(let response) where (200..<300).contains(response.status):
            self.state.webhooksSent += 1
            return
        case .success(let response):
            failure = "answered \(response.status)"
        case .failure(let error):
            failure = error.description
        }
        guard attempt < self.settings.maxWebhookAttempts else {
            self.state.webhooksFailed += 1
            self.logger.warning(
                "webhook given up", ["event": .string(id), "url": .string(url), "reason": .string(failure)])
            return
        }
        self.logger.info(
            "webhook retry scheduled",
            ["event": .string(id), "url": .string(url), "attempt": .number(Double(attempt)), "reason": .string(failure)])
        self.deliver(body, id: id, to: url, attempt: attempt + 1, after: pow(2, Double(attempt - 1)))
    }
}

/// The emulator's port outs and credentials, and its random source. Confined to the emulator's queue.
final class EmulatorState: @unchecked Sendable {
    struct Stored {
        var portOut: PortOut
        var project: String
        var createdAtMs: Int64
    }

    struct Credentials {
        var accountNumber: String
        var accountPin: String
    }

    var portOuts: [String: Stored] = [:]
    var orders: [String: SortedChunks<PortOutPaging.SortKey>] = [:]
    var credentials: [String: Credentials] = [:]
    var random: EmulatorRandom
    var webhooksSent = 0
    var webhooksFailed = 0
    var webhooksPending = 0
    /// Set by `shutdown`: timers still pending then send nothing, since OpenSSL may already be torn down at exit.
    var isStopped = false

    init(seed: UInt64?) {
        self.random = EmulatorRandom(seed: seed)
    }

    func insert(_ portOut: PortOut, project: String, createdAtMs: Int64) {
        self.portOuts[portOut.id] = Stored(portOut: portOut, project: project, createdAtMs: createdAtMs)
        self.orders[project, default: SortedChunks()].insert(PortOutPaging.SortKey(createdAtMs: createdAtMs, id: portOut.id))
    }
}

/// SplitMix64, seeded for reproducible runs or from the system's generator otherwise.
struct EmulatorRandom: RandomNumberGenerator {
    private var state: UInt64
    private static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    init(seed: UInt64?) {
        var system = SystemRandomNumberGenerator()
        self.state = seed ?? system.next()
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var value = self.state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }

    /// A value in 0..<1.
    mutating func unit() -> Double {
        Double(self.next() >> 11) / Double(1 << 53)
    }

    mutating func chance(_ probability: Double) -> Bool {
        probability > 0 && self.unit() < probability
    }

    /// 28 base-62 characters, the shape of the carrier's ids after their prefix.
    mutating func identifier() -> String {
        String(decoding: (0..<28).map { _ in Self.alphabet[Int(self.next() % 62)] }, as: UTF8.self)
    }

    mutating func digits(_ count: Int) -> String {
        String(decoding: (0..<count).map { _ in UInt8(ascii: "0") + UInt8(self.next() % 10) }, as: UTF8.self)
    }
}
