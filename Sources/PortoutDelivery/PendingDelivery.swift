import PortoutJournal

/// One event waiting to reach one destination.
public struct PendingDelivery: Sendable, Equatable {
    public var sequence: UInt64
    public var eventID: String
    public var tenant: String
    public var destination: String
    /// Deliveries with the same key go out one at a time in sequence order: the port out's id, or the event id
    /// for an event that belongs to no port out.
    public var orderingKey: String
    /// The event record's location, so the body is read back from the journal instead of held in memory.
    public var location: JournalLocation
    /// When the event was accepted, or when a replay queued it again: the age that `maxAgeSeconds` and the
    /// oldest-pending report count from.
    public var acceptedAtMs: Int64
    /// Attempts already made.
    public var attempts: Int
    public var nextAttemptAtMs: Int64
    /// The replay or redelivery that queued this delivery again, or nil for the first fan-out.
    public var replayID: String?
    /// Whether its replay job counts it under `notConfigured` rather than `queued`, because its destination was
    /// not configured at a start or a reload removed it. Its settlement moves it back to `queued`.
    public var isStranded = false

    public init(
        sequence: UInt64, eventID: String, tenant: String, destination: String, orderingKey: String,
        location: JournalLocation, acceptedAtMs: Int64, attempts: Int = 0, nextAttemptAtMs: Int64 = 0,
        replayID: String? = nil
    ) {
        self.replayID = replayID
        self.sequence = sequence
        self.eventID = eventID
        self.tenant = tenant
        self.destination = destination
        self.orderingKey = orderingKey
        self.location = location
        self.acceptedAtMs = acceptedAtMs
        self.attempts = attempts
        self.nextAttemptAtMs = nextAttemptAtMs
    }
}

extension PendingDelivery {
    /// The `tenant/destination` key of the delivery's destination, as `DeliveryEngine.key` makes it.
    public var destinationKey: String {
        DeliveryEngine.key(tenant: self.tenant, destination: self.destination)
    }

    /// The delivery's tenant and destination, for grouping many deliveries without joining a key for each.
    public var destinationName: DestinationName {
        DestinationName(tenant: self.tenant, id: self.destination)
    }
}

/// A destination named by its tenant and its id within the tenant.
public struct DestinationName: Hashable, Sendable {
    public var tenant: String
    public var id: String

    public init(tenant: String, id: String) {
        self.tenant = tenant
        self.id = id
    }

    /// The `tenant/destination` key, as `DeliveryEngine.key` makes it.
    public var key: String {
        DeliveryEngine.key(tenant: self.tenant, destination: self.id)
    }
}

/// One event's delivery to one destination. An event belongs to one tenant, so its sequence and the
/// destination's id name the delivery.
public struct DeliveryKey: Hashable, Sendable, Comparable {
    public var sequence: UInt64
    public var destination: String

    public init(sequence: UInt64, destination: String) {
        self.sequence = sequence
        self.destination = destination
    }

    public static func < (lhs: DeliveryKey, rhs: DeliveryKey) -> Bool {
        (lhs.sequence, lhs.destination) < (rhs.sequence, rhs.destination)
    }
}

/// A change to the dead-letter list that an outcome record makes. The engine passes each to its observer once
/// the journal has the record, in the journal's order, so that the list changes as a restart would rebuild it.
public enum DeadLetterChange: Sendable, Equatable {
    /// A delivery gave up.
    case deadLettered(PendingDelivery, AttemptRecord)
    /// An operator gave a held delivery up (`DeliveryEngine.abandonWaiting`). It is listed like a dead letter, but
    /// not reported on its own, since one request may abandon a destination's whole backlog.
    case abandoned(PendingDelivery, AttemptRecord)
    /// A replayed delivery went out or was withdrawn, so the dead letter it replaced is dropped or listed again.
    case replaySettled(DeliveryKey, AttemptOutcome)
    /// A replay's copy was journaled again behind its owner's final outcome. If that outcome was a dead letter,
    /// the list took it after the replay's first records, so the copy replaces it only from here on.
    case replayQueued(DeliveryKey)

    /// The change that `attempt` makes, or nil for one that changes nothing on the list.
    public init?(_ delivery: PendingDelivery, attempt: AttemptRecord) {
        switch attempt.outcome {
        case .deadLettered:
            self = .deadLettered(delivery, attempt)
        case .delivered, .cancelled:
            guard delivery.replayID != nil else { return nil }
            let key = DeliveryKey(sequence: delivery.sequence, destination: delivery.destination)
            self = .replaySettled(key, attempt.outcome)
        case .retryScheduled:
            return nil
        }
    }

    /// Whether the change is a delivery that gave up.
    public var isDeadLetter: Bool {
        switch self {
        case .deadLettered, .abandoned: true
        case .replaySettled, .replayQueued: false
        }
    }
}

/// The time of each destination's last journaled attempt that returned 410 Gone, which disabled it, gathered
/// while the journal is replayed at start. A disable lives in destinations.json. If the file shows no change of
/// the destination's mode after this time, such as a resume, the disable had not been saved when the process
/// ended.
public struct GoneDestinations: Sendable {
    /// By `tenant/destination` key.
    public private(set) var sinceMs: [String: Int64] = [:]

    public init() {}

    /// Notes an attempt in journal order. Every 410 counts, also one of a replay cancelled while it was in flight.
    public mutating func note(_ attempt: AttemptRecord) {
        guard attempt.httpStatus == 410 else { return }
        let key = DeliveryEngine.key(tenant: attempt.tenant, destination: attempt.destination)
        self.sinceMs[key] = max(self.sinceMs[key] ?? 0, attempt.atMs)
    }
}
