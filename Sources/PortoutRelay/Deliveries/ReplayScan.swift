import PortoutCore
import PortoutDelivery
import PortoutJournal

/// A pass over the journal that finds the deliveries a filter takes, in event order.
enum ReplayScan {
    /// Replays larger than this are rejected, since every match is held in memory until it is queued; a time
    /// range splits a larger one.
    static let maxDeliveries = 1_000_000

    struct Match: Sendable {
        var event: EventSummary
        var destination: String
    }

    enum Failure: Error, Equatable, CustomStringConvertible {
        case tooManyMatches
        case stopped
        /// The journal could not be read, and whether the cause may pass, such as running out of descriptors.
        case journal(String, isTransient: Bool)

        var description: String {
            switch self {
            case .tooManyMatches:
                return "the filter matches more than \(ReplayScan.maxDeliveries) deliveries; narrow it, for example with from and to"
            case .stopped:
                return "the scan was cancelled"
            case .journal(let reason, _):
                return "the journal could not be read: \(reason)"
            }
        }
    }

    /// Reads every record in the journal under `dataDirectory` and returns the deliveries the filter takes: each
    /// event's delivery to each destination it was fanned out to, and with `deadLetteredOnly`, only those whose
    /// last outcome was a dead letter. `shouldStop` is polled between records.
    static func run(
        dataDirectory: String, filter: DeliveryFilter, shouldStop: () -> Bool = { false }
    ) -> Result<(matches: [Match], scannedRecords: Int), Failure> {
        var candidates: [DeliveryKey: EventSummary] = [:]
        var deadLettered = Set<DeliveryKey>()
        // Dead letters queued again by a replay: dead letters again if that replay is cancelled before sending.
        var suspended = Set<DeliveryKey>()
        var scanned = 0
        var failure: Failure?
        do {
            // Damage is ignored here: the records it hides cannot be replayed, and a torn tail in the active
            // segment is only a write in progress.
            _ = try JournalCommands.forEachRecord(dataDirectory) { record, location in
                guard failure == nil else { return }
                scanned += 1
                if scanned % 4096 == 0 && shouldStop() {
                    failure = .stopped
                    return
                }
                switch record {
                case .event(let event):
                    let summary = EventSummary(event, location: location)
                    for destination in event.destinations where filter.matches(summary, destination: destination) {
                        candidates[DeliveryKey(sequence: event.sequence, destination: destination)] = summary
                    }
                    if candidates.count > self.maxDeliveries {
                        failure = .tooManyMatches
                    }
                case .attempt(let attempt):
                    let key = DeliveryKey(sequence: attempt.eventSequence, destination: attempt.destination)
                    switch attempt.outcome {
                    case .deadLettered:
                        suspended.remove(key)
                        deadLettered.insert(key)
                    case .cancelled:
                        if suspended.remove(key) != nil {
                            deadLettered.insert(key)
                        }
                    case .delivered:
                        suspended.remove(key)
                        deadLettered.remove(key)
                    case .retryScheduled:
                        break
                    }
                case .replay(let replay):
                    let key = DeliveryKey(sequence: replay.event.sequence, destination: replay.destination)
                    if deadLettered.remove(key) != nil {
                        suspended.insert(key)
                    }
                }
            }
        } catch {
            return .failure(.journal(error.description, isTransient: error.isTransient))
        }
        if let failure {
            return .failure(failure)
        }
        let keys = candidates.keys.filter { !filter.deadLetteredOnly || deadLettered.contains($0) }.sorted()
        return .success((keys.map { Match(event: candidates[$0]!, destination: $0.destination) }, scanned))
    }
}
