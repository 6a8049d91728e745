/// One field at fault in a rejected event, named by its path in the body (`data.status`).
public struct ValidationIssue: Sendable, Equatable, CustomStringConvertible {
    public let field: String
    public let message: String

    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String {
        "\(self.field): \(self.message)"
    }
}

/// A `portOut` object as the Port Out API defines it.
public struct PortOut: Sendable, Equatable {
    public var id: String
    public var behavior: String
    public var completedAt: String?
    public var createdAt: String
    public var expiredAt: String?
    public var failureReason: String?
    public var status: PortOutStatus
    public var subscription: String
    public var user: String

    public init(
        id: String, behavior: String, completedAt: String?, createdAt: String, expiredAt: String?,
        failureReason: String?, status: PortOutStatus, subscription: String, user: String
    ) {
        self.id = id
        self.behavior = behavior
        self.completedAt = completedAt
        self.createdAt = createdAt
        self.expiredAt = expiredAt
        self.failureReason = failureReason
        self.status = status
        self.subscription = subscription
        self.user = user
    }

    public static let behaviors: Set<String> = ["cancelOnly", "portOut"]
    public static let failureReasons: Set<String> = ["consentNotGiven", "consentRequestCanceled"]

    /// The object in the API's JSON shape, with keys in the reference's order.
    public var jsonValue: JSONValue {
        .object(
            JSONObject([
                ("object", "portOut"),
                ("id", .string(self.id)),
                ("behavior", .string(self.behavior)),
                ("completedAt", self.completedAt.map(JSONValue.string) ?? .null),
                ("createdAt", .string(self.createdAt)),
                ("expiredAt", self.expiredAt.map(JSONValue.string) ?? .null),
                ("failureReason", self.failureReason.map(JSONValue.string) ?? .null),
                ("status", .string(self.status.rawValue)),
                ("subscription", .string(self.subscription)),
                ("user", .string(self.user)),
            ])
        )
    }
}

/// An event body that passed validation.
public struct ValidatedEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// A status change: one of the `com.gigs.portOut.*` status types, or a bare `portOut` object.
        case statusChange
        /// `com.gigs.portOut.updated`: fields other than the status changed.
        case portOutUpdated
        /// `com.gigs.portOutCredentials.issued`.
        case credentialsIssued
        /// Any other `com.gigs.` type, accepted only where a tenant lists it.
        case other
    }

    public let kind: Kind
    /// The envelope's event id; nil for a bare `portOut` object, which carries none.
    public let id: String?
    public let type: String
    /// The envelope's project; nil for a bare `portOut` object.
    public let project: String?
    public let portOut: PortOut?

    public var isBare: Bool {
        self.id == nil
    }

    /// The status that dedupe and the lifecycle key on: set for status changes only.
    public var lifecycleStatus: PortOutStatus? {
        self.kind == .statusChange ? self.portOut?.status : nil
    }
}
