import Foundation
import PortoutCore
import PortoutDelivery
import PortoutJournal
import PortoutTestSupport
import Synchronization
import Testing

@testable import PortoutRelay

#if canImport(Glibc)
import Glibc
#endif

/// The dead-letter list when a dead letter's event cannot be read back at once: a transient failure delays
/// the listing, and any other leaves it to the next start.
@Suite struct DeadLetterListingTests {
    /// Journals one event, and returns the journal and a delivery of it that gave up.
    static func deadLetteredDelivery(
        in directory: TemporaryDirectory
    ) throws -> (Journal, PendingDelivery, AttemptRecord) {
        let journal = try Journal.open(
            directory: directory.path, segmentBytes: 1 << 20, logger: Logger(level: .error)
        ) { _, _ in }
        let event = EventRecord(
            sequence: 1, acceptedAtMs: 1_700_000_000_000, isStale: false, isBare: false, status: .processing,
            dedupeKey: DigestKey(high: 1, low: 2), lifecycleKey: DigestKey(high: 3, low: 4), tenant: "t1",
            eventID: "evt_1", type: "com.gigs.portOut.processing", portOutID: "pout_1", project: "acme-mobile",
            destinations: ["crm"], body: Array(#"{"x":1}"#.utf8))
        let written = Locked<Result<JournalLocation, JournalError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        journal.append(.event(event)) { result in
            written.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        let location = try #require(written.withLock { $0 }).get()
        let delivery = PendingDelivery(
            sequence: 1, eventID: "evt_1", tenant: "t1", destination: "crm", orderingKey: "pout_1", location: location,
            acceptedAtMs: event.acceptedAtMs, attempts: 2)
        let attempt = AttemptRecord(
            eventSequence: 1, tenant: "t1", destination: "crm", attempt: 3, outcome: .deadLettered, httpStatus: nil,
            atMs: 1_700_000_001_000, nextAttemptAtMs: nil, error: "cannot read the event from the journal")
        return (journal, delivery, attempt)
    }

    static func observer(journal: Journal, deadLetters: DeadLetterIndex, failingReads: Int, errno: Int32)
        -> RelayDeliveryObserver
    {
        var observer = RelayDeliveryObserver(
            journal: journal, deadLetters: deadLetters, replays: ReplayRegistry(logger: Logger(level: .error)),
            operational: OperationalWebhook(config: nil, logger: Logger(level: .error)), logger: Logger(level: .error))
        let reads = Atomic(0)
        observer.readEvent = { location throws(JournalError) in
            if reads.add(1, ordering: .relaxed).newValue <= failingReads {
                throw JournalError(path: journal.directory, reason: "open failed", errno: errno)
            }
            return try journal.read(at: location)
        }
        return observer
    }

    @Test func listedOnceDescriptorsAreBack() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (journal, delivery, attempt) = try Self.deadLetteredDelivery(in: directory)
        defer { journal.close() }
        let deadLetters = DeadLetterIndex()
        let observer = Self.observer(journal: journal, deadLetters: deadLetters, failingReads: 1, errno: EMFILE)
        observer.deadLettersJournaled([(delivery, attempt)])
        #expect(deadLetters.count == 0)
        // The first retry comes after a second.
        let deadline = Date().addingTimeInterval(10)
        while deadLetters.count == 0 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(deadLetters.count == 1)
        #expect(deadLetters.lookup([DeliveryKey(sequence: 1, destination: "crm")]).first?.event.portOutID == "pout_1")
    }

    @Test func damagedRecordNotRetried() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (journal, delivery, attempt) = try Self.deadLetteredDelivery(in: directory)
        defer { journal.close() }
        let deadLetters = DeadLetterIndex()
        // errno 0 is a record that fails its checksum, which a later read would find the same.
        let observer = Self.observer(journal: journal, deadLetters: deadLetters, failingReads: 1, errno: 0)
        observer.deadLettersJournaled([(delivery, attempt)])
        Thread.sleep(forTimeInterval: RelayDeliveryObserver.listingRetrySeconds[0] + 0.5)
        #expect(deadLetters.count == 0)
    }
}
