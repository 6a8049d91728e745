/// A port out's status, as the carrier's Port Out API names it.
public enum PortOutStatus: String, CaseIterable, Sendable, Comparable {
    case initiated
    case processing
    case issued
    case completed
    case expired
    case failed

    /// The position in the lifecycle: `initiated` < `processing` < `issued` < the three terminal statuses, which
    /// share one rank because a port out reaches at most one of them.
    public var rank: Int {
        switch self {
        case .initiated: return 1
        case .processing: return 2
        case .issued: return 3
        case .completed, .expired, .failed: return 4
        }
    }

    public var isTerminal: Bool {
        self.rank == 4
    }

    /// The event type the carrier sends when a port out enters this status.
    public var eventType: String {
        switch self {
        case .initiated: return "com.gigs.portOut.created"
        case .processing: return "com.gigs.portOut.processing"
        case .issued: return "com.gigs.portOut.issued"
        case .completed: return "com.gigs.portOut.completed"
        case .expired: return "com.gigs.portOut.expired"
        case .failed: return "com.gigs.portOut.failed"
        }
    }

    /// A stable one-byte code for the journal; zero means "no status".
    public var code: UInt8 {
        switch self {
        case .initiated: return 1
        case .processing: return 2
        case .issued: return 3
        case .completed: return 4
        case .expired: return 5
        case .failed: return 6
        }
    }

    public init?(code: UInt8) {
        guard let status = Self.allCases.first(where: { $0.code == code }) else { return nil }
        self = status
    }

    public static func < (lhs: PortOutStatus, rhs: PortOutStatus) -> Bool {
        lhs.rank < rhs.rank
    }

    /// Statuses by the event type that announces them, for the status-change types only.
    public static let byEventType: [String: PortOutStatus] = Dictionary(
        uniqueKeysWithValues: allCases.map { ($0.eventType, $0) }
    )
}

/// Event types of the carrier platform that the relay understands.
public enum CarrierEventType {
    public static let portOutUpdated = "com.gigs.portOut.updated"
    public static let credentialsIssued = "com.gigs.portOutCredentials.issued"
    public static let prefix = "com.gigs."

    /// Whether the type is one of the port-out status types or `portOut.updated`.
    public static func isPortOutType(_ type: String) -> Bool {
        type == self.portOutUpdated || PortOutStatus.byEventType[type] != nil
    }
}
