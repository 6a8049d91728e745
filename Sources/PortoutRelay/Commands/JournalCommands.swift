import Foundation
import PortoutCore
import PortoutDelivery
import PortoutJournal

/// `portout-relay journal verify|dump|stats`: read a journal offline, without opening it for writing.
public enum JournalCommands {
    /// Fields of a credentials event body that a dump replaces with `"[redacted]"` unless bodies are requested.
    static let redactedFields: Set<String> = ["accountNumber", "accountPin"]

    /// Checks every frame of every segment and prints one line per segment; returns false if any is damaged or
    /// missing. A torn tail of the active segment is printed but is not damage, since a crash mid-write leaves
    /// one and the next start cuts it off.
    public static func verify(dataDirectory: String, output: (String) -> Void) throws(JournalError) -> Bool {
        var healthy = true
        var order = EventSequenceCheck()
        try self.forEachSegment(dataDirectory) { name, bytes, gap, isActive in
            if let gap {
                output("\(name): \(gap.missing) before it")
                healthy = false
            }
            var undecodable = 0
            let result = SegmentFile.scan(bytes) { payload, _ in
                switch JournalRecord.decode(payload) {
                case nil: undecodable += 1
                case .event(let event)?: order.note(event.sequence)
                default: break
                }
            }
            var line = "\(name): \(result.records) records, \(bytes.count) bytes"
            if let problem = order.takeProblem() {
                line += "; \(problem)"
                healthy = false
            }
            for damage in result.damage {
                line += "; damaged: \(damage.reason), bytes \(damage.start) to \(damage.end) skipped"
                healthy = false
            }
            if let tornTail = result.tornTail {
                line += "; torn tail after byte \(result.validBytes): \(tornTail)"
                if isActive {
                    line += " (a crash mid-write leaves this; the next start cuts it off)"
                } else {
                    healthy = false
                }
            }
            output(line)
        }
        return healthy
    }

    /// Prints one JSON line per record, or with `deadLettersOnly` one per delivery whose last outcome is a dead
    /// letter, in event order. Bodies are left out unless `bodies` is set, and account numbers and PINs are
    /// redacted even then. Returns the damage found, whose bytes hold no readable records.
    @discardableResult
    public static func dump(
        dataDirectory: String, bodies: Bool, deadLettersOnly: Bool, output: (String) -> Void
    ) throws(JournalError) -> [SegmentDamage] {
        var events: [UInt64: EventRecord] = [:]
        // Dead letters by event and destination; a replay takes one off the list until it settles.
        var deadLetters: [DeliveryKey: JSONValue] = [:]
        var suspended: [DeliveryKey: JSONValue] = [:]
        // As at a start, a dead letter of an event that retention removed is not listed, because it cannot be sent.
        var removedEvents = RemovedEventCheck()
        defer {
            for key in deadLetters.keys.sorted() {
                output(JSONWriter.encodeString(deadLetters[key]!))
            }
        }
        return try self.forEachRecord(dataDirectory) { record, location in
            switch record {
            case .event(let event):
                removedEvents.note(event.sequence)
                if deadLettersOnly {
                    var stored = event
                    if !bodies { stored.body = [] }
                    events[event.sequence] = stored
                } else {
                    output(JSONWriter.encodeString(self.describe(event, location: location, bodies: bodies)))
                }
            case .attempt(let attempt):
                guard deadLettersOnly else {
                    return output(JSONWriter.encodeString(self.describe(attempt)))
                }
                let key = DeliveryKey(sequence: attempt.eventSequence, destination: attempt.destination)
                switch attempt.outcome {
                case .deadLettered where removedEvents.isRemoved(attempt.eventSequence):
                    suspended[key] = nil
                case .deadLettered:
                    var value = self.describe(attempt)
                    if let event = events[attempt.eventSequence], case .object(var object) = value {
                        object["event"] = self.describe(event, location: nil, bodies: bodies)
                        value = .object(object)
                    }
                    suspended[key] = nil
                    deadLetters[key] = value
                case .cancelled:
                    deadLetters[key] = suspended.removeValue(forKey: key)
                case .delivered:
                    suspended[key] = nil
                case .retryScheduled:
                    break
                }
            case .replay(let replay):
                guard deadLettersOnly else {
                    return output(JSONWriter.encodeString(self.describe(replay)))
                }
                let key = DeliveryKey(sequence: replay.event.sequence, destination: replay.destination)
                if let value = deadLetters.removeValue(forKey: key) {
                    suspended[key] = value
                }
            }
        }
    }

    /// Prints totals for the journal: segments, bytes, records by kind, deliveries by outcome, and with
    /// `retentionSeconds` what a retention pass would remove now. Returns the damage found, whose bytes hold no
    /// readable records.
    @discardableResult
    public static func stats(
        dataDirectory: String, retentionSeconds: Int? = nil, output: (String) -> Void
    ) throws(JournalError) -> [SegmentDamage] {
        // Sizes from the file system, since forEachRecord below reads every segment anyway.
        let (segments, bytes) = Journal.diskUsage(directory: self.journalDirectory(dataDirectory))
        var events = 0
        var stale = 0
        var outcomes: [AttemptOutcome: Int] = [:]
        var replayed = 0
        // Each unsettled delivery, by sequence and destination, with the segment of its event.
        var unsettled: [String: UInt64] = [:]
        var oldest: Int64?
        var newest: Int64?
        let damage = try self.forEachRecord(dataDirectory) { record, location in
            switch record {
            case .event(let event):
                events += 1
                if event.isStale { stale += 1 }
                oldest = min(oldest ?? event.acceptedAtMs, event.acceptedAtMs)
                newest = max(newest ?? event.acceptedAtMs, event.acceptedAtMs)
                for destination in event.destinations {
                    unsettled["\(event.sequence)/\(destination)"] = location.segment
                }
            case .attempt(let attempt):
                outcomes[attempt.outcome, default: 0] += 1
                if attempt.outcome.isFinal {
                    unsettled.removeValue(forKey: "\(attempt.eventSequence)/\(attempt.destination)")
                }
            case .replay(let replay):
                // The engine queues a replayed delivery only if it is settled, so a replay record of an unsettled
                // one added nothing.
                let key = "\(replay.event.sequence)/\(replay.destination)"
                if unsettled[key] == nil {
                    replayed += 1
                    unsettled[key] = replay.event.location.segment
                }
            }
        }
        var summary = JSONObject()
        summary["segments"] = .number(Double(segments))
        summary["bytes"] = .number(Double(bytes))
        summary["events"] = .number(Double(events))
        summary["staleEvents"] = .number(Double(stale))
        for outcome in AttemptOutcome.allCases {
            summary["attempts." + outcome.name] = .number(Double(outcomes[outcome] ?? 0))
        }
        summary["replayedDeliveries"] = .number(Double(replayed))
        summary["unsettledDeliveries"] = .number(Double(unsettled.count))
        summary["oldestAcceptedAt"] = oldest.map { .string(RFC3339.format(epochMilliseconds: $0)) } ?? .null
        summary["newestAcceptedAt"] = newest.map { .string(RFC3339.format(epochMilliseconds: $0)) } ?? .null
        // One segment may have several damaged regions. Missing segments are counted apart, since the segment
        // after a gap is intact.
        let damaged = damage.filter { $0.missingBefore == 0 }
        summary["damagedSegments"] = .number(Double(Set(damaged.map(\.segment)).count))
        summary["damagedRegions"] = .number(Double(damaged.count))
        summary["missingSegments"] = .number(Double(damage.reduce(0) { $0 + $1.missingBefore }))
        if let retentionSeconds {
            let plan = JournalRetention.plan(
                try JournalRetention.segments(in: self.journalDirectory(dataDirectory)),
                nowMs: Int64(Date().timeIntervalSince1970 * 1000), retentionSeconds: retentionSeconds,
                oldestUnsettledSegment: unsettled.values.min())
            summary["retention"] = [
                "retentionSeconds": .number(Double(retentionSeconds)),
                "removableSegments": .number(Double(plan.removable.count)),
                "removableBytes": .number(Double(plan.removableBytes)),
                "keptForUnsettled": plan.keptForUnsettled.map { .string(SegmentFile.name(for: $0)) } ?? .null,
            ]
        }
        output(JSONWriter.encodeString(.object(summary)))
        return damage
    }

    static func describe(_ event: EventRecord, location: JournalLocation?, bodies: Bool) -> JSONValue {
        var object = JSONObject()
        object["record"] = "event"
        object["sequence"] = .number(Double(event.sequence))
        object["acceptedAt"] = .string(RFC3339.format(epochMilliseconds: event.acceptedAtMs))
        object["tenant"] = .string(event.tenant)
        object["project"] = .string(event.project)
        object["event"] = .string(event.eventID)
        object["type"] = .string(event.type)
        object["portOut"] = event.portOutID.isEmpty ? .null : .string(event.portOutID)
        object["status"] = event.status.map { .string($0.rawValue) } ?? .null
        object["stale"] = .bool(event.isStale)
        object["bare"] = .bool(event.isBare)
        object["destinations"] = .array(event.destinations.map { .string($0) })
        if let location {
            object["location"] = .string(location.description)
        }
        if bodies {
            object["body"] = self.redactedBody(event.body)
        }
        return .object(object)
    }

    static func describe(_ attempt: AttemptRecord) -> JSONValue {
        var object = JSONObject()
        object["record"] = "attempt"
        object["sequence"] = .number(Double(attempt.eventSequence))
        object["tenant"] = .string(attempt.tenant)
        object["destination"] = .string(attempt.destination)
        object["attempt"] = .number(Double(attempt.attempt))
        object["outcome"] = .string(attempt.outcome.name)
        object["httpStatus"] = attempt.httpStatus.map { .number(Double($0)) } ?? .null
        object["at"] = .string(RFC3339.format(epochMilliseconds: attempt.atMs))
        object["nextAttemptAt"] = attempt.nextAttemptAtMs.map { .string(RFC3339.format(epochMilliseconds: $0)) } ?? .null
        object["error"] = attempt.error.isEmpty ? .null : .string(attempt.error)
        return .object(object)
    }

    static func describe(_ replay: ReplayRecord) -> JSONValue {
        var object = JSONObject()
        object["record"] = "replay"
        object["replay"] = .string(replay.replayID)
        object["sequence"] = .number(Double(replay.event.sequence))
        object["tenant"] = .string(replay.event.tenant)
        object["destination"] = .string(replay.destination)
        object["event"] = .string(replay.event.eventID)
        object["at"] = .string(RFC3339.format(epochMilliseconds: replay.atMs))
        return .object(object)
    }

    /// Returns the body as JSON with account numbers and PINs replaced, or as a string if it does not parse.
    static func redactedBody(_ body: [UInt8]) -> JSONValue {
        guard let value = try? JSONParser.parse(body) else {
            return .string("[unparseable body of \(body.count) bytes]")
        }
        return self.redact(value)
    }

    private static func redact(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(let object):
            var copy = JSONObject()
            for (key, member) in object.members {
                copy[key] = self.redactedFields.contains(key) && member != .null ? "[redacted]" : self.redact(member)
            }
            return .object(copy)
        case .array(let elements):
            return .array(elements.map(self.redact))
        default:
            return value
        }
    }

    private static func journalDirectory(_ dataDirectory: String) -> String {
        dataDirectory + "/journal"
    }

    /// Passes each segment's file name and bytes to `body`, in order, with the numbers missing just before it and
    /// whether it is the active one. That is the last segment, or one followed only by segments with no records,
    /// which the writer prepares ahead of rotation. Recovery at start picks the same one.
    private static func forEachSegment(
        _ dataDirectory: String, _ body: (String, [UInt8], SegmentFile.Gap?, Bool) throws(JournalError) -> Void
    ) throws(JournalError) {
        let directory = self.journalDirectory(dataDirectory)
        guard FileManager.default.fileExists(atPath: directory) else {
            throw JournalError(path: directory, reason: "no journal here; pass the relay's dataDir with --data-dir")
        }
        let segments = try SegmentFile.segments(in: directory)
        let gaps = Dictionary(uniqueKeysWithValues: SegmentFile.gaps(in: segments).map { ($0.before, $0) })
        var active = segments.last
        for segment in segments.dropFirst().reversed() {
            guard SegmentFile.containsNoRecords(directory + "/" + SegmentFile.name(for: segment)) else { break }
            active = segments[segments.firstIndex(of: segment)! - 1]
        }
        for segment in segments {
            let name = SegmentFile.name(for: segment)
            try body(name, try SegmentFile.readAll(directory + "/" + name), gaps[segment], segment >= active ?? 0)
        }
    }

    /// A damaged region or torn tail found by an offline read, which skipped its bytes, or segments missing before
    /// this one.
    public struct SegmentDamage: Sendable, CustomStringConvertible {
        /// The segment's file name.
        public var segment: String
        public var problem: String
        /// Segments missing just before this one, which is then intact itself; 0 for damage in this segment.
        public var missingBefore: UInt64 = 0

        public var description: String {
            "\(self.segment): \(self.problem)"
        }
    }

    /// Visits the valid records of every segment in order. Returns each damaged region, run of missing segments
    /// and torn tail, but not the active segment's torn tail, because a crash mid-write leaves one.
    static func forEachRecord(
        _ dataDirectory: String, _ body: (JournalRecord, JournalLocation) -> Void
    ) throws(JournalError) -> [SegmentDamage] {
        var damage: [SegmentDamage] = []
        var order = EventSequenceCheck()
        try self.forEachSegment(dataDirectory) { name, bytes, gap, isActive in
            if let gap {
                damage.append(SegmentDamage(segment: name, problem: "\(gap.missing) before it", missingBefore: gap.count))
            }
            let segment = UInt64(name.prefix(20)) ?? 0
            let result = SegmentFile.scan(bytes) { payload, offset in
                guard let record = JournalRecord.decode(payload) else { return }
                if case .event(let event) = record {
                    order.note(event.sequence)
                }
                body(record, JournalLocation(segment: segment, offset: Int64(offset), length: Int32(payload.count)))
            }
            for region in result.damage {
                damage.append(SegmentDamage(
                    segment: name, problem: "\(region.reason); bytes \(region.start) to \(region.end) skipped"))
            }
            if let problem = order.takeProblem() {
                damage.append(SegmentDamage(segment: name, problem: problem))
            }
            if let tornTail = result.tornTail, !isActive {
                damage.append(SegmentDamage(segment: name, problem: "torn tail after byte \(result.validBytes): \(tornTail)"))
            }
        }
        return damage
    }
}
