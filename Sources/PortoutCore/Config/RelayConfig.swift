import Foundation

/// The relay's whole configuration, read from `config.json`.
public struct RelayConfig: Sendable {
    public var listen: ListenAddress
    /// Absolute path of the directory that contains the journal.
    public var dataDir: String
    public var logLevel: LogLevel
    /// Number of HTTP event-loop threads.
    public var eventLoops: Int
    public var limits: Limits
    public var journal: JournalSettings
    public var dedupe: DedupeSettings
    public var delivery: DeliveryDefaults
    public var tenants: [TenantConfig]
    public var admin: AdminConfig
    /// The endpoint of the relay's own signed events, or nil to send none.
    public var operationalWebhook: OperationalWebhookConfig?
    /// Whether every request on both listeners is logged with its method, path, status and duration.
    public var accessLog = false
    /// Seconds that SIGTERM or SIGINT gives requests already read and deliveries in flight to finish.
    public var shutdownGraceSeconds: Int
    /// Seconds a port out may sit in each non-terminal status before it counts as stalled.
    public var stalledAfterSeconds: [PortOutStatus: Int] = RelayConfig.defaultStalledAfterSeconds

    /// Starting points, not carrier guarantees: a port out usually moves on within minutes of `initiated`, within a
    /// day of `processing`, and is completed or expired within days of `issued`. Tune them to the carrier.
    public static let defaultStalledAfterSeconds: [PortOutStatus: Int] = [
        .initiated: 3600, .processing: 86_400, .issued: 7 * 86_400,
    ]

    public func tenant(_ id: String) -> TenantConfig? {
        self.tenants.first { $0.id == id }
    }
}

/// Limits that keep one client from holding up others.
public struct Limits: Sendable, Equatable {
    public var maxHeaderBytes = 16 * 1024
    public var maxBodyBytes = 256 * 1024
    /// Maximum bytes read from clients whose requests have no response yet, over all connections. Without it,
    /// every connection could hold a maximal request at the same time: over 1 GiB at the defaults.
    public var maxBufferedRequestBytes = 64 * 1024 * 1024
    public var maxConnections = 4096
    /// Maximum open connections from one client address, so that one client cannot take every connection.
    public var maxConnectionsPerClient = 1024
    public var headerTimeoutMs = 10_000
    public var bodyTimeoutMs = 30_000
    public var idleTimeoutMs = 60_000

    /// Maximum length of a chunk-size line that the HTTP parser accepts, extensions included.
    public static let maxChunkSizeLineBytes = 4096

    /// The smallest `maxBufferedRequestBytes` with room for one request of the largest size: its head and body,
    /// and the longest piece of chunk framing (a size line with its CRLF, or a trailer line) not yet parsed.
    public var smallestBufferedRequestBytes: Int {
        self.maxHeaderBytes + self.maxBodyBytes + max(Self.maxChunkSizeLineBytes + 2, self.maxHeaderBytes)
    }

    /// The part of `maxBufferedRequestBytes` that the connections from one client address may hold, in the ratio
    /// of `maxConnectionsPerClient` to `maxConnections` and never less than one request of the largest size. With
    /// the whole limit open to anyone, one client sending partial bodies got every other client a 503.
    public var maxBufferedRequestBytesPerClient: Int {
        guard self.maxConnectionsPerClient < self.maxConnections else { return self.maxBufferedRequestBytes }
        let share = Double(self.maxBufferedRequestBytes) * Double(self.maxConnectionsPerClient) / Double(self.maxConnections)
        return min(self.maxBufferedRequestBytes, max(self.smallestBufferedRequestBytes, Int(share)))
    }

    /// Returns these limits with `maxConnections` lowered to the descriptors that `openFileLimit` leaves after
    /// `reservedDescriptors`, and `maxConnectionsPerClient` lowered in proportion. Lowering only the first would
    /// give one client every connection and the whole of `maxBufferedRequestBytes`.
    public func fitted(openFileLimit: Int, reservedDescriptors: Int) -> Limits {
        let room = max(64, openFileLimit - reservedDescriptors)
        guard self.maxConnections > room else { return self }
        var fitted = self
        fitted.maxConnections = room
        let perClient = Double(self.maxConnectionsPerClient) * Double(room) / Double(self.maxConnections)
        fitted.maxConnectionsPerClient = max(1, min(self.maxConnectionsPerClient, Int(perClient)))
        return fitted
    }

    public init() {}
}

public struct JournalSettings: Sendable, Equatable {
    /// Size in bytes past which the active segment is closed and a new one started.
    public var segmentBytes = 64 * 1024 * 1024
    /// `Retry-After` seconds sent with a 503 when the journal cannot write.
    public var retryAfterSeconds = 5
    /// Age after which segments are removed, unless they hold an unsettled delivery; nil keeps every segment.
    public var retentionSeconds: Int?

    public init() {}
}

public struct DedupeSettings: Sendable, Equatable {
    /// Maximum number of (tenant, port out, status) keys remembered; the least recently seen is forgotten first.
    public var capacity = 1_000_000

    public init() {}
}

/// Delivery settings that every destination inherits unless it sets its own.
public struct DeliveryDefaults: Sendable, Equatable {
    public var retry = RetryPolicy()
    public var timeoutMs = 10_000
    public var concurrency = 8
    /// Upper bound on a destination's `Retry-After`, so one destination cannot stall its queue for days.
    public var maxRetryAfterSeconds = 3600
    /// Consecutive failed attempts after which a destination gets one delivery at a time until one succeeds.
    public var breakerThreshold = 5
    /// Threads that run libcurl transfers, the delivery thread included. libcurl does a transfer's work on the
    /// thread driving its multi handle, so one thread caps the delivery rate. The default is one per CPU, up to
    /// four.
    public var transferThreads = min(4, max(1, ProcessInfo.processInfo.activeProcessorCount))

    public init() {}
}

/// When and how often a failed delivery is tried again.
public struct RetryPolicy: Sendable, Equatable {
    /// Delay in seconds before attempt n + 1 after attempt n failed; the last entry repeats.
    public var scheduleSeconds: [Double] = [5, 60, 300, 1800, 7200, 21_600, 43_200, 86_400]
    /// Each delay is scaled by a random factor in 1 ± jitter.
    public var jitter = 0.2
    public var maxAttempts = 9
    /// A delivery still failing this long after its event was accepted is dead-lettered.
    public var maxAgeSeconds = 3 * 86_400

    public init() {}
}

public enum SignatureScheme: String, Sendable, CaseIterable {
    case standardWebhooks = "standard-webhooks"
    case timestampedHex = "timestamped-hex"
    case hex
}

/// A tenant's inbound signature check.
public struct VerifyConfig: Sendable, Equatable {
    public var scheme: SignatureScheme
    /// Every secret that may have signed a request; several during a rotation.
    public var secrets: [Secret]
    /// Maximum distance in seconds between a signature's timestamp and the relay's clock.
    public var toleranceSeconds: Int
    /// The signature header for the hex schemes; `standard-webhooks` uses fixed header names.
    public var header: String
}

public struct TenantConfig: Sendable {
    public var id: String
    public var projects: [String]
    public var verify: VerifyConfig
    /// Event types accepted beyond the port-out and credentials types.
    public var acceptTypes: Set<String>
    public var destinations: [DestinationConfig]
    /// Bearer tokens of the read API, each granting access to this tenant's projects.
    public var apiKeys: [Secret] = []
    /// The carrier API that write calls are forwarded to. Without one, they get 501.
    public var upstream: UpstreamConfig?
}

/// The target of a tenant's forwarded calls: the carrier API's base URL and the key the relay sends with them.
public struct UpstreamConfig: Sendable, Equatable {
    public var baseURL: String
    public var apiKey: Secret
    public var timeoutMs: Int
}

public struct DestinationConfig: Sendable {
    public var id: String
    public var url: String
    /// The outbound Standard Webhooks secret the relay signs deliveries with.
    public var secret: Secret
    /// Secrets that each delivery is signed with as well during a rotation, so that a receiver still checking with
    /// one of them accepts it. A Standard Webhooks receiver accepts any one valid signature of the header's list.
    public var previousSecrets: [Secret] = []
    /// Port-out statuses to deliver; nil delivers all. An event without a status never matches a set filter.
    public var statuses: Set<PortOutStatus>?
    /// Event types to deliver; nil delivers all.
    public var types: Set<String>?
    /// Extra request headers, in configuration order.
    public var headers: [(name: String, value: String)]
    public var timeoutMs: Int
    public var concurrency: Int
    public var retry: RetryPolicy
    /// Whether events journaled as stale are delivered too.
    public var deliverStale: Bool
    /// Consecutive failed attempts after which deliveries go out one at a time until one succeeds.
    public var breakerThreshold: Int
    /// Maximum deliveries started per second, or nil for no limit.
    public var rateLimit: Double?

    /// Returns whether this destination receives an event with the given type, status and staleness.
    public func accepts(type: String, status: PortOutStatus?, stale: Bool) -> Bool {
        if stale && !self.deliverStale { return false }
        if let types = self.types, !types.contains(type) { return false }
        if let statuses = self.statuses {
            guard let status, statuses.contains(status) else { return false }
        }
        return true
    }
}

extension DestinationConfig: Equatable {
    /// Compares every setting; headers compare in order, since they are sent in order.
    public static func == (lhs: DestinationConfig, rhs: DestinationConfig) -> Bool {
        lhs.id == rhs.id && lhs.url == rhs.url && lhs.secret == rhs.secret && lhs.previousSecrets == rhs.previousSecrets
            && lhs.statuses == rhs.statuses
            && lhs.types == rhs.types && lhs.headers.map(\.name) == rhs.headers.map(\.name)
            && lhs.headers.map(\.value) == rhs.headers.map(\.value) && lhs.timeoutMs == rhs.timeoutMs
            && lhs.concurrency == rhs.concurrency && lhs.retry == rhs.retry && lhs.deliverStale == rhs.deliverStale
            && lhs.breakerThreshold == rhs.breakerThreshold && lhs.rateLimit == rhs.rateLimit
    }
}

/// The endpoint of the relay's own events: a destination disabled, a delivery dead-lettered, a replay finished.
public struct OperationalWebhookConfig: Sendable, Equatable {
    public var url: String
    /// The Standard Webhooks secret the events are signed with.
    public var secret: Secret
    /// Secrets the events are signed with as well during a rotation, as a destination's are.
    public var previousSecrets: [Secret] = []
    public var timeoutMs: Int
}
