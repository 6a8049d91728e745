import PortoutCore

/// An accepted event as journaled: everything needed to rebuild dedupe and lifecycle state and to deliver it.
public struct EventRecord: Sendable, Equatable {
    /// Acceptance order, starting at 1; gaps appear where a write failed.
    public var sequence: UInt64
    public var acceptedAtMs: Int64
    /// Whether the event's status did not move its port out forward when it was accepted.
    public var isStale: Bool
    /// Whether the body was a bare `portOut` object rather than an event envelope.
    public var isBare: Bool
    /// The port out's status: set for status changes and `.updated` events, nil for events without a port out.
    public var status: PortOutStatus?
    public var dedupeKey: DigestKey
    /// The (tenant, port out) key of the lifecycle check, stored so that replay at start-up needs no hashing.
    public var lifecycleKey: DigestKey?
    public var tenant: String
    public var eventID: String
    public var type: String
    /// The port out's id, or empty for an event without one.
    public var portOutID: String
    public var project: String
    /// The port out's `createdAt` in Unix milliseconds and its subscription, for the read API's order and
    /// filter; 0 and empty for an event without a port out.
    public var portOutCreatedAtMs: Int64 = 0
    public var subscription = ""
    /// Destinations the event was fanned out to when it was accepted.
    public var destinations: [String]
    /// The body exactly as received.
    public var body: [UInt8]

    public init(
        sequence: UInt64, acceptedAtMs: Int64, isStale: Bool, isBare: Bool, status: PortOutStatus?,
        dedupeKey: DigestKey, lifecycleKey: DigestKey?, tenant: String, eventID: String, type: String, portOutID: String, project: String,
        destinations: [String], body: [UInt8], portOutCreatedAtMs: Int64 = 0, subscription: String = ""
    ) {
        self.sequence = sequence
        self.acceptedAtMs = acceptedAtMs
        self.isStale = isStale
        self.isBare = isBare
        self.status = status
        self.dedupeKey = dedupeKey
        self.lifecycleKey = lifecycleKey
        self.tenant = tenant
        self.eventID = eventID
        self.type = type
        self.portOutID = portOutID
        self.project = project
        self.destinations = destinations
        self.body = body
        self.portOutCreatedAtMs = portOutCreatedAtMs
        self.subscription = subscription
    }
}

/// The outcome of one delivery attempt.
public enum AttemptOutcome: UInt8, Sendable, CaseIterable {
    case delivered = 1
    case retryScheduled = 2
    case deadLettered = 3
    /// Withdrawn before it was sent, when an operator cancelled the replay that queued it.
    case cancelled = 4

    public var name: String {
        switch self {
        case .delivered: return "delivered"
        case .retryScheduled: return "retryScheduled"
        case .deadLettered: return "deadLettered"
        case .cancelled: return "cancelled"
        }
    }

    /// Whether no further attempt follows.
    public var isFinal: Bool {
        self != .retryScheduled
    }
}

/// The outcome of one delivery attempt of one event to one destination.
public struct AttemptRecord: Sendable, Equatable {
    public var eventSequence: UInt64
    public var tenant: String
    public var destination: String
    /// 1 for the first attempt.
    public var attempt: Int
    public var outcome: AttemptOutcome
    /// The destination's status code, or nil when no response arrived.
    public var httpStatus: Int?
    public var atMs: Int64
    /// When the next attempt is due, for `retryScheduled`.
    public var nextAttemptAtMs: Int64?
    /// The reason the attempt failed, empty when it succeeded.
    public var error: String

    public init(
        eventSequence: UInt64, tenant: String, destination: String, attempt: Int, outcome: AttemptOutcome,
        httpStatus: Int?, atMs: Int64, nextAttemptAtMs: Int64?, error: String
    ) {
        self.eventSequence = eventSequence
        self.tenant = tenant
        self.destination = destination
        self.attempt = attempt
        self.outcome = outcome
        self.httpStatus = httpStatus
        self.atMs = atMs
        self.nextAttemptAtMs = nextAttemptAtMs
        self.error = error
    }
}

/// The fields of an accepted event that delivering, filtering and listing need, without its body.
public struct EventSummary: Sendable, Equatable {
    public var sequence: UInt64
    public var tenant: String
    public var eventID: String
    public var type: String
    /// The port out's id, or empty for an event without one.
    public var portOutID: String
    public var status: PortOutStatus?
    public var acceptedAtMs: Int64
    public var location: JournalLocation

    public init(
        sequence: UInt64, tenant: String, eventID: String, type: String, portOutID: String, status: PortOutStatus?,
        acceptedAtMs: Int64, location: JournalLocation
    ) {
        self.sequence = sequence
        self.tenant = tenant
        self.eventID = eventID
        self.type = type
        self.portOutID = portOutID
        self.status = status
        self.acceptedAtMs = acceptedAtMs
        self.location = location
    }

    public init(_ event: EventRecord, location: JournalLocation) {
        self.init(
            sequence: event.sequence, tenant: event.tenant, eventID: event.eventID, type: event.type,
            portOutID: event.portOutID, status: event.status, acceptedAtMs: event.acceptedAtMs, location: location)
    }

    /// The key that orders deliveries: the port out's id, or the event id for an event without a port out.
    public var orderingKey: String {
        self.portOutID.isEmpty ? self.eventID : self.portOutID
    }
}

/// A delivery queued again by a replay or a dead-letter redelivery: it is unsettled from here on, with no
/// attempts made, until an attempt record settles it. It carries what delivering needs, so a restart can resume
/// it without the event's record.
public struct ReplayRecord: Sendable, Equatable {
    public var replayID: String
    public var destination: String
    public var event: EventSummary
    public var atMs: Int64

    public init(replayID: String, destination: String, event: EventSummary, atMs: Int64) {
        self.replayID = replayID
        self.destination = destination
        self.event = event
        self.atMs = atMs
    }
}

public enum JournalRecord: Sendable, Equatable {
    case event(EventRecord)
    case attempt(AttemptRecord)
    case replay(ReplayRecord)

    /// Returns whether a payload's first byte names a record kind, which a scan across damage checks first.
    public static func isKnownKind(_ byte: UInt8) -> Bool {
        byte == self.eventKind || byte == self.attemptKind || byte == self.replayKind
    }

    private static let eventKind: UInt8 = 1
    private static let attemptKind: UInt8 = 2
    private static let replayKind: UInt8 = 3
    private static let staleFlag: UInt8 = 1
    private static let bareFlag: UInt8 = 2
    private static let lifecycleKeyFlag: UInt8 = 4

    /// Encodes the record's payload, which a frame wraps with its length and checksum.
    public func encoded() -> [UInt8] {
        switch self {
        case .event(let event):
            var writer = BinaryWriter(capacity: 128 + event.body.count)
            writer.write(Self.eventKind)
            writer.write(event.sequence)
            writer.write(event.acceptedAtMs)
            writer.write(
                (event.isStale ? Self.staleFlag : 0) | (event.isBare ? Self.bareFlag : 0)
                    | (event.lifecycleKey != nil ? Self.lifecycleKeyFlag : 0))
            writer.write(event.status?.code ?? 0)
            writer.write(event.dedupeKey.high)
            writer.write(event.dedupeKey.low)
            if let lifecycleKey = event.lifecycleKey {
                writer.write(lifecycleKey.high)
                writer.write(lifecycleKey.low)
            }
            writer.write(event.tenant)
            writer.write(event.eventID)
            writer.write(event.type)
            writer.write(event.portOutID)
            writer.write(event.project)
            writer.write(event.portOutCreatedAtMs)
            writer.write(event.subscription)
            writer.write(UInt16(event.destinations.count))
            for destination in event.destinations {
                writer.write(destination)
            }
            writer.writeBlob(event.body)
            return writer.bytes
        case .attempt(let attempt):
            var writer = BinaryWriter(capacity: 96 + attempt.error.utf8.count)
            writer.write(Self.attemptKind)
            writer.write(attempt.eventSequence)
            writer.write(attempt.tenant)
            writer.write(attempt.destination)
            writer.write(UInt32(clamping: attempt.attempt))
            writer.write(attempt.outcome.rawValue)
            writer.write(UInt16(clamping: attempt.httpStatus ?? 0))
            writer.write(attempt.atMs)
            writer.write(attempt.nextAttemptAtMs ?? 0)
            writer.write(String(decoding: Array(attempt.error.utf8.prefix(1024)), as: UTF8.self))
            return writer.bytes
        case .replay(let replay):
            let event = replay.event
            var writer = BinaryWriter(capacity: 160)
            writer.write(Self.replayKind)
            writer.write(replay.replayID)
            writer.write(replay.destination)
            writer.write(replay.atMs)
            writer.write(event.sequence)
            writer.write(event.tenant)
            writer.write(event.eventID)
            writer.write(event.type)
            writer.write(event.portOutID)
            writer.write(event.status?.code ?? 0)
            writer.write(event.acceptedAtMs)
            writer.write(event.location.segment)
            writer.write(event.location.offset)
            writer.write(event.location.length)
            return writer.bytes
        }
    }

    /// Decodes a payload; nil if it is not a well-formed record, which a matching checksum makes a bug or a
    /// record from a newer version. Without `includeBody`, an event's body is left empty, which saves a copy per
    /// record when the journal is replayed at start-up. The text fields in `omitting` are left empty too.
    public static func decode(_ payload: [UInt8], includeBody: Bool = true) -> JournalRecord? {
        payload.withUnsafeBytes { self.decode($0, includeBody: includeBody) }
    }

    public static func decode(
        _ payload: UnsafeRawBufferPointer, includeBody: Bool = true, omitting: OmittedEventText = []
    ) -> JournalRecord? {
        var reader = BinaryReader(payload)
        switch reader.read(UInt8.self) {
        case Self.eventKind:
            guard let event = self.decodeEvent(&reader, includeBody: includeBody, omitting: omitting) else { return nil }
            return .event(event)
        case Self.attemptKind: return self.decodeAttempt(&reader).map { .attempt($0) }
        case Self.replayKind: return self.decodeReplay(&reader).map { .replay($0) }
        default: return nil
        }
    }

    /// Returns an event record's body and whether it is a bare object, skipping the other fields without
    /// decoding them; nil for any other record. The read API calls this for every item it returns.
    public static func eventBody(_ payload: UnsafeRawBufferPointer) -> (body: [UInt8], isBare: Bool)? {
        var reader = BinaryReader(payload)
        guard reader.read(UInt8.self) == Self.eventKind, reader.skip(16), let flags = reader.read(UInt8.self),
            reader.skip(1 + 16 + (flags & self.lifecycleKeyFlag != 0 ? 16 : 0))
        else { return nil }
        for _ in 0..<5 {
            guard reader.skipString() else { return nil }
        }
        guard reader.skip(8), reader.skipString(), let destinations = reader.read(UInt16.self) else { return nil }
        for _ in 0..<destinations {
            guard reader.skipString() else { return nil }
        }
        guard let body = reader.readBlob() else { return nil }
        return (body, flags & self.bareFlag != 0)
    }

    private static func decodeEvent(
        _ reader: inout BinaryReader, includeBody: Bool, omitting: OmittedEventText
    ) -> EventRecord? {
        guard let sequence = reader.read(UInt64.self),
            let acceptedAt = reader.read(Int64.self),
            let flags = reader.read(UInt8.self),
            let statusCode = reader.read(UInt8.self),
            let high = reader.read(UInt64.self),
            let low = reader.read(UInt64.self)
        else { return nil }
        var lifecycleKey: DigestKey?
        if flags & self.lifecycleKeyFlag != 0 {
            guard let lifecycleHigh = reader.read(UInt64.self), let lifecycleLow = reader.read(UInt64.self) else {
                return nil
            }
            lifecycleKey = DigestKey(high: lifecycleHigh, low: lifecycleLow)
        }
        guard let tenant = reader.readString() else { return nil }
        // The id and type are skipped here, and read from this copy of the reader once the destinations show
        // whether they are wanted.
        var idReader = reader
        guard reader.skipString(), reader.skipString(),
            let portOutID = reader.readString(),
            let project = reader.readString(),
            let createdAt = reader.read(Int64.self)
        else { return nil }
        var subscription = ""
        if omitting.contains(.subscription) {
            guard reader.skipString() else { return nil }
        } else {
            guard let text = reader.readString() else { return nil }
            subscription = text
        }
        guard let destinationCount = reader.read(UInt16.self) else { return nil }
        var destinations: [String] = []
        for _ in 0..<destinationCount {
            guard let destination = reader.readString() else { return nil }
            destinations.append(destination)
        }
        var eventID = ""
        var type = ""
        let omitsIDAndType =
            omitting.contains(.idAndType) || (omitting.contains(.undeliveredIDAndType) && destinations.isEmpty)
        if !omitsIDAndType {
            guard let id = idReader.readString(), let text = idReader.readString() else { return nil }
            eventID = id
            type = text
        }
        guard let body = reader.readBlob(copy: includeBody), reader.isAtEnd else { return nil }
        let status = statusCode == 0 ? nil : PortOutStatus(code: statusCode)
        if statusCode != 0 && status == nil { return nil }
        return EventRecord(
            sequence: sequence, acceptedAtMs: acceptedAt, isStale: flags & self.staleFlag != 0,
            isBare: flags & self.bareFlag != 0, status: status, dedupeKey: DigestKey(high: high, low: low),
            lifecycleKey: lifecycleKey, tenant: tenant, eventID: eventID, type: type, portOutID: portOutID, project: project,
            destinations: destinations, body: body, portOutCreatedAtMs: createdAt, subscription: subscription)
    }

    private static func decodeAttempt(_ reader: inout BinaryReader) -> AttemptRecord? {
        guard let sequence = reader.read(UInt64.self),
            let tenant = reader.readString(),
            let destination = reader.readString(),
            let attempt = reader.read(UInt32.self),
            let outcomeCode = reader.read(UInt8.self),
            let outcome = AttemptOutcome(rawValue: outcomeCode),
            let httpStatus = reader.read(UInt16.self),
            let at = reader.read(Int64.self),
            let nextAttempt = reader.read(Int64.self),
            let error = reader.readString(),
            reader.isAtEnd
        else { return nil }
        return AttemptRecord(
            eventSequence: sequence, tenant: tenant, destination: destination, attempt: Int(attempt),
            outcome: outcome, httpStatus: httpStatus == 0 ? nil : Int(httpStatus), atMs: at,
            nextAttemptAtMs: outcome == .retryScheduled ? nextAttempt : nil, error: error)
    }

    private static func decodeReplay(_ reader: inout BinaryReader) -> ReplayRecord? {
        guard let replayID = reader.readString(),
            let destination = reader.readString(),
            let at = reader.read(Int64.self),
            let sequence = reader.read(UInt64.self),
            let tenant = reader.readString(),
            let eventID = reader.readString(),
            let type = reader.readString(),
            let portOutID = reader.readString(),
            let statusCode = reader.read(UInt8.self),
            let acceptedAt = reader.read(Int64.self),
            let segment = reader.read(UInt64.self),
            let offset = reader.read(Int64.self),
            let length = reader.read(Int32.self),
            reader.isAtEnd
        else { return nil }
        let status = statusCode == 0 ? nil : PortOutStatus(code: statusCode)
        if statusCode != 0 && status == nil { return nil }
        let event = EventSummary(
            sequence: sequence, tenant: tenant, eventID: eventID, type: type, portOutID: portOutID, status: status,
            acceptedAtMs: acceptedAt, location: JournalLocation(segment: segment, offset: offset, length: length))
        return ReplayRecord(replayID: replayID, destination: destination, event: event, atMs: at)
    }
}

/// Text fields of an event record that `JournalRecord.decode` can leave empty for a caller that never reads them.
/// Decoding events took about a third of the instructions of a start on a large journal, most of it in making
/// strings.
public struct OmittedEventText: OptionSet, Sendable {
    public let rawValue: UInt8

    public init(rawValue: UInt8) {
        self.rawValue = rawValue
    }

    /// The event's id and type.
    public static let idAndType = OmittedEventText(rawValue: 1 << 0)
    /// The id and type of an event without destinations, which is never delivered. Other events keep theirs.
    public static let undeliveredIDAndType = OmittedEventText(rawValue: 1 << 1)
    /// The port out's subscription.
    public static let subscription = OmittedEventText(rawValue: 1 << 2)
}
