import PortoutCore
import PortoutDelivery
import PortoutJournal

/// The journal's record of single deliveries, every attempt and every time a replay queued one again, for
/// `GET /admin/deliveries`, so that an operator can see what happened to one event at a destination without
/// reading a journal dump.
enum DeliveryHistory {
    /// The status of a delivery after the records read so far. It comes from the journal alone, so a delivery
    /// held by a paused or disabled destination shows the status it had when the destination stopped sending.
    enum State: String, Sendable {
        /// Not attempted yet, or queued again by a replay and not attempted since.
        case pending
        /// The last attempt failed. The next is due at a set time, or after a 410, once the destination resumes.
        case retrying
        case delivered
        case deadLettered
        /// Queued by a replay of an event that retention removed, and then withdrawn, so the journal has no
        /// earlier state to return to.
        case withdrawn
    }

    /// One step of a delivery, in journal order.
    enum Step: Sendable {
        case attempt(AttemptRecord)
        case queuedByReplay(replayID: String, atMs: Int64)
    }

    struct Delivery: Sendable {
        var event: EventSummary
        var destination: String
        var state = State.pending
        var steps: [Step] = []
        /// The state before the newest replay queued the delivery, which a withdrawal of that copy restores.
        var stateBeforeReplay: State?
        /// Whether retention removed the event's record, so the steps start at a replay of it.
        var isEventRemoved = false

        var key: DeliveryKey {
            DeliveryKey(sequence: self.event.sequence, destination: self.destination)
        }

        var id: String {
            self.key.id(prefix: Self.idPrefix)
        }

        static let idPrefix = "dlv_"

        /// The delivery as `GET /admin/deliveries` and `journal deliveries` show it.
        var jsonValue: JSONValue {
            func time(_ milliseconds: Int64) -> JSONValue {
                .string(RFC3339.format(epochMilliseconds: milliseconds))
            }
            // The number of the last attempt step since the delivery was last queued. An abandonment's record is a
            // dead letter that repeats it, where every attempt's record counts one higher.
            var lastAttempt = 0
            let steps: [JSONValue] = self.steps.map { step in
                defer {
                    switch step {
                    case .attempt(let attempt): lastAttempt = max(lastAttempt, attempt.attempt)
                    case .queuedByReplay: lastAttempt = 0
                    }
                }
                switch step {
                case .attempt(let attempt)
                where attempt.outcome == .deadLettered && attempt.httpStatus == nil && attempt.attempt <= lastAttempt:
                    return .object(JSONObject([
                        ("kind", "abandoned"), ("at", time(attempt.atMs)), ("attempts", .number(Double(attempt.attempt))),
                        ("reason", .string(attempt.error)),
                    ]))
                case .attempt(let attempt) where attempt.outcome == .cancelled:
                    // A cancelled replay withdrew its copy. An attempt that was in flight then failed and keeps
                    // its number, status and error, where a copy never sent has attempt 0.
                    var members: [(key: String, value: JSONValue)] = [("kind", "withdrawn"), ("at", time(attempt.atMs))]
                    if attempt.attempt > 0 {
                        members += [
                            ("attempt", .number(Double(attempt.attempt))),
                            ("httpStatus", attempt.httpStatus.map { .number(Double($0)) } ?? .null),
                            ("error", attempt.error.isEmpty ? .null : .string(attempt.error)),
                        ]
                    }
                    return .object(JSONObject(members))
                case .attempt(let attempt):
                    return .object(JSONObject([
                        ("kind", "attempt"), ("at", time(attempt.atMs)), ("attempt", .number(Double(attempt.attempt))),
                        ("outcome", .string(attempt.outcome.name)),
                        ("httpStatus", attempt.httpStatus.map { .number(Double($0)) } ?? .null),
                        ("error", attempt.error.isEmpty ? .null : .string(attempt.error)),
                        // A 410 disables the destination, so the next attempt waits for a resume, not for a time.
                        (
                            "nextAttemptAt",
                            attempt.httpStatus == 410 ? .null : (attempt.nextAttemptAtMs.map(time) ?? .null)
                        ),
                    ]))
                case .queuedByReplay(let replayID, let atMs):
                    return .object(JSONObject([
                        ("kind", "queuedByReplay"), ("at", time(atMs)), ("replay", .string(replayID)),
                    ]))
                }
            }
            return .object(JSONObject(
                [("object", "delivery"), ("id", .string(self.id))] + self.event.jsonMembers + [
                    ("destination", .string(self.destination)), ("state", .string(self.state.rawValue)),
                    ("eventRemoved", .bool(self.isEventRemoved)), ("steps", .array(steps)),
                ]))
        }

        mutating func apply(_ attempt: AttemptRecord) {
            self.steps.append(.attempt(attempt))
            switch attempt.outcome {
            case .delivered: self.state = .delivered
            case .retryScheduled: self.state = .retrying
            case .deadLettered: self.state = .deadLettered
            case .cancelled: self.state = self.stateBeforeReplay ?? .withdrawn
            }
        }

        /// Takes a replay record as the restart's recovery does: a delivery still unsettled keeps its owner, since
        /// a replay journals every match before the engine leaves out those already pending. Where the owner
        /// settled in between, the engine journals the replay again after the owner's outcome.
        mutating func applyReplay(_ replay: ReplayRecord) {
            guard self.state != .pending && self.state != .retrying else { return }
            self.steps.append(.queuedByReplay(replayID: replay.replayID, atMs: replay.atMs))
            self.stateBeforeReplay = self.state
            self.state = .pending
        }
    }

    struct Page: Sendable {
        var deliveries: [Delivery]
        var hasMore: Bool
        var scannedRecords: Int
        /// The journal's damage, whose records and the steps in them are missing from the page.
        var damage: [JournalCommands.SegmentDamage]
    }

    /// Reads the whole journal under `dataDirectory` and returns the first `limit` deliveries that `filter`
    /// takes after `after`, in the order of their keys (event sequence, then destination), each with its steps.
    /// Only `limit + 1` deliveries are kept while reading, so the memory a request takes does not grow with the
    /// journal. `shouldStop` is polled between records.
    ///
    /// NOTE: every page reads the whole journal: 1.5 to 1.8 s for 1,000,000 events (written by `portout-bench
    /// journal --records 1000000 --destinations a,b`) in a release build on a 2-core AMD EPYC machine.
    /// Walking a large journal page by page costs that much for each page.
    static func page(
        dataDirectory: String, filter: DeliveryFilter, after: DeliveryKey?, limit: Int,
        shouldStop: () -> Bool = { false }
    ) -> Result<Page, ReplayScan.Failure> {
        var candidates: [DeliveryKey: Delivery] = [:]
        // The largest candidate key, which the next smaller candidate displaces once there are `limit + 1`.
        // Replays of removed events come after newer events, so a displacement happens whenever one matches.
        var largest: DeliveryKey?
        var scanned = 0
        var stopped = false
        // A delivery of an event that retention removed starts at its replay, as it does at a restart.
        var removedEvents = RemovedEventCheck()
        func keep(_ delivery: Delivery) {
            let key = delivery.key
            guard after.map({ key > $0 }) ?? true, candidates[key] == nil else { return }
            if candidates.count > limit {
                guard let current = largest, key < current else { return }
                candidates[current] = nil
                candidates[key] = delivery
                largest = candidates.keys.max()
            } else {
                candidates[key] = delivery
                largest = max(largest ?? key, key)
            }
        }
        let damage: [JournalCommands.SegmentDamage]
        do {
            damage = try JournalCommands.forEachRecord(dataDirectory) { record, location in
                guard !stopped else { return }
                scanned += 1
                if scanned % 4096 == 0 && shouldStop() {
                    stopped = true
                    return
                }
                switch record {
                case .event(let event):
                    removedEvents.note(event.sequence)
                    let summary = EventSummary(event, location: location)
                    for destination in event.destinations where filter.matches(summary, destination: destination) {
                        keep(Delivery(event: summary, destination: destination))
                    }
                case .attempt(let attempt):
                    let key = DeliveryKey(sequence: attempt.eventSequence, destination: attempt.destination)
                    candidates[key]?.apply(attempt)
                case .replay(let replay):
                    let key = DeliveryKey(sequence: replay.event.sequence, destination: replay.destination)
                    if candidates[key] == nil, removedEvents.isRemoved(replay.event.sequence),
                        filter.matches(replay.event, destination: replay.destination)
                    {
                        // Settled as far as the journal shows, so the replay below applies to it.
                        // NOTE: if retention also removed the record of an earlier replay that queued this copy,
                        // a later replay that found it pending is credited with it here, as in a restart's counts.
                        keep(Delivery(
                            event: replay.event, destination: replay.destination, state: .withdrawn,
                            isEventRemoved: true))
                    }
                    candidates[key]?.applyReplay(replay)
                }
            }
        } catch {
            return .failure(.journal(error.description, isTransient: error.isTransient))
        }
        if stopped {
            return .failure(.stopped)
        }
        let ordered = candidates.values.sorted { $0.key < $1.key }
        return .success(Page(
            deliveries: Array(ordered.prefix(limit)), hasMore: ordered.count > limit, scannedRecords: scanned,
            damage: damage))
    }
}

extension DeliveryKey {
    /// `<prefix><event sequence>_<destination>`, stable across restarts since both parts come from the journal.
    func id(prefix: String) -> String {
        "\(prefix)\(self.sequence)_\(self.destination)"
    }

    /// Parses an id made by `id(prefix:)`, or returns nil for anything else.
    init?(id: String, prefix: String) {
        guard id.hasPrefix(prefix) else { return nil }
        let rest = id.dropFirst(prefix.count)
        // Only the form `id(prefix:)` writes, so that one delivery has one id: no sign and no leading zeros.
        guard let separator = rest.firstIndex(of: "_"), let sequence = UInt64(rest[..<separator]),
            String(sequence) == rest[..<separator]
        else { return nil }
        let destination = String(rest[rest.index(after: separator)...])
        guard !destination.isEmpty else { return nil }
        self.init(sequence: sequence, destination: destination)
    }
}

/// The oldest event sequence read so far in a pass over the journal. Events come before their attempts and
/// replays, so an attempt or replay whose event is older than every event read belongs to a removed event.
struct RemovedEventCheck {
    private var oldest: UInt64?

    mutating func note(_ sequence: UInt64) {
        self.oldest = min(self.oldest ?? sequence, sequence)
    }

    func isRemoved(_ sequence: UInt64) -> Bool {
        sequence < self.oldest ?? .max
    }
}

extension EventSummary {
    /// The event's fields as every admin list of deliveries and dead letters shows them.
    var jsonMembers: [(key: String, value: JSONValue)] {
        [
            ("tenant", .string(self.tenant)),
            ("event", .string(self.eventID)),
            ("type", .string(self.type)),
            ("portOut", self.portOutID.isEmpty ? .null : .string(self.portOutID)),
            ("status", self.status.map { .string($0.rawValue) } ?? .null),
            ("acceptedAt", .string(RFC3339.format(epochMilliseconds: self.acceptedAtMs))),
        ]
    }
}
