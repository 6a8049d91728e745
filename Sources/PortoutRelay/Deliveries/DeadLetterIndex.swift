import Dispatch
import PortoutCore
import PortoutDelivery
import PortoutJournal
import Synchronization

/// A delivery that gave up, with its event and the last attempt's outcome.
struct DeadLetter: Sendable {
    var event: EventSummary
    var destination: String
    var attempts: Int
    var httpStatus: Int?
    var reason: String
    var deadLetteredAtMs: Int64

    init(event: EventSummary, destination: String, attempt: AttemptRecord) {
        self.event = event
        self.destination = destination
        self.attempts = attempt.attempt
        self.httpStatus = attempt.httpStatus
        self.reason = attempt.error
        self.deadLetteredAtMs = attempt.atMs
    }

    /// `dl_<event sequence>_<destination>`.
    var id: String {
        self.key.id(prefix: Self.idPrefix)
    }

    static let idPrefix = "dl_"

    var key: DeliveryKey {
        DeliveryKey(sequence: self.event.sequence, destination: self.destination)
    }
}

/// The dead letters not yet redelivered, rebuilt from the journal at start and kept current as deliveries settle.
///
/// NOTE: every dead letter stays in memory until it is redelivered, about 300 bytes each, so a destination that
/// dead-letters for days at a high rate grows this without bound.
final class DeadLetterIndex: Sendable {
    /// The place of a dead letter: on the list, or off it while a replay sends its delivery again.
    private enum Placement {
        case listed
        case suspended
    }

    private struct Lists {
        var listed: [DeliveryKey: DeadLetter] = [:]
        /// Dead letters queued again by a replay, off the list until that delivery settles: back on it if the
        /// replay is cancelled before sending it, gone if it is delivered or dead-letters anew.
        var suspended: [DeliveryKey: DeadLetter] = [:]
        /// Dead letters whose event is still being read back from the journal, with the segment it is in. A
        /// replay can suspend or settle one meanwhile, and `fill` then puts it where those changes left it.
        var unread: [DeliveryKey: (placement: Placement, segment: UInt64)] = [:]
    }

    private let lists = Locked<Lists>(Lists())
    /// Reads back the events of abandoned deliveries, one abandonment after another, off the journal's writer.
    private let backgroundListing = DispatchQueue(label: "portout.dead-letter-listing")

    /// Runs `work` after every listing queued before it, so that an abandonment's response waits until its dead
    /// letters are on the list.
    func inListingOrder(_ work: @escaping @Sendable () -> Void) {
        self.backgroundListing.async(execute: work)
    }

    /// Lists a dead letter rebuilt from the journal at start.
    func add(_ deadLetter: DeadLetter) {
        self.lists.withLock { lists in
            lists.suspended.removeValue(forKey: deadLetter.key)
            lists.listed[deadLetter.key] = deadLetter
        }
    }

    /// Takes the place on the list of a dead letter whose event is being read, when the journal has its record,
    /// so that later changes apply to it in the journal's order. A dead letter it replaces is dropped.
    func reserve(_ key: DeliveryKey, segment: UInt64) {
        self.lists.withLock { lists in
            lists.listed.removeValue(forKey: key)
            lists.suspended.removeValue(forKey: key)
            lists.unread[key] = (.listed, segment)
        }
    }

    /// Puts a reserved dead letter where the changes since `reserve` left it. Returns false when a replay has
    /// delivered it meanwhile or its reservation is gone.
    func fill(_ deadLetter: DeadLetter) -> Bool {
        self.lists.withLock { lists in
            switch lists.unread.removeValue(forKey: deadLetter.key)?.placement {
            case .listed:
                lists.listed[deadLetter.key] = deadLetter
            case .suspended:
                lists.suspended[deadLetter.key] = deadLetter
            case nil:
                return false
            }
            return true
        }
    }

    /// Gives up a reservation whose event could not be read.
    func dropReservation(_ key: DeliveryKey) {
        self.lists.withLock { _ = $0.unread.removeValue(forKey: key) }
    }

    /// Takes a dead letter off the list while a replay sends it again.
    func suspend(_ key: DeliveryKey) {
        self.lists.withLock { lists in
            if let deadLetter = lists.listed.removeValue(forKey: key) {
                lists.suspended[key] = deadLetter
            } else if lists.unread[key]?.placement == .listed {
                lists.unread[key]?.placement = .suspended
            }
        }
    }

    /// Applies how a replayed delivery settled: withdrawn puts its dead letter back on the list, delivered
    /// drops it. A new dead letter arrives through `reserve`.
    func replaySettled(_ key: DeliveryKey, outcome: AttemptOutcome) {
        self.lists.withLock { lists in
            switch outcome {
            case .cancelled:
                if let deadLetter = lists.suspended.removeValue(forKey: key) {
                    lists.listed[key] = deadLetter
                } else if lists.unread[key]?.placement == .suspended {
                    lists.unread[key]?.placement = .listed
                }
            case .delivered:
                lists.suspended.removeValue(forKey: key)
                if lists.unread[key]?.placement == .suspended {
                    lists.unread.removeValue(forKey: key)
                }
            case .deadLettered, .retryScheduled:
                break
            }
        }
    }

    /// Forgets dead letters whose event is in a segment before `segment`, which retention removes.
    func forget(before segment: UInt64) -> Int {
        self.lists.withLock { lists in
            let before = lists.listed.count
            lists.listed = lists.listed.filter { $0.value.event.location.segment >= segment }
            lists.suspended = lists.suspended.filter { $0.value.event.location.segment >= segment }
            lists.unread = lists.unread.filter { $0.value.segment >= segment }
            return before - lists.listed.count
        }
    }

    var count: Int {
        self.lists.withLock { $0.listed.count }
    }

    /// The dead letters whose event is still being read back.
    var unreadCount: Int {
        self.lists.withLock { $0.unread.count }
    }

    /// Returns the dead letters that pass `filter`, in event order.
    func matching(_ filter: DeliveryFilter) -> [DeadLetter] {
        self.lists.withLock { lists in
            lists.listed.values.filter { filter.matches($0.event, destination: $0.destination) }
        }.sorted { $0.key < $1.key }
    }

    /// Returns the dead letters with these keys, once each and in event order; unknown keys are left out.
    func lookup(_ keys: [DeliveryKey]) -> [DeadLetter] {
        self.lists.withLock { lists in
            Set(keys).compactMap { lists.listed[$0] }
        }.sorted { $0.key < $1.key }
    }
}
