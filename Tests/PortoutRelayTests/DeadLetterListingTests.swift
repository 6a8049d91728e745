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
/// the listing, and any other leaves it to the next start. A replay that queues the delivery again meanwhile
/// applies to the dead letter as if it had been listed.
@Suite struct DeadLetterListingTests {
    /// A journal with one event, a delivery of it that gave up, and an observer whose first reads fail.
    final class Listing {
        let directory = TemporaryDirectory()
        let journal: Journal
        let deadLetters = DeadLetterIndex()
        let observer: RelayDeliveryObserver
        let key = DeliveryKey(sequence: 1, destination: "crm")
        let change: DeadLetterChange

        /// Makes the observer's first `failingReads` reads fail with `errno`, where 0 stands for a damaged record.
        init(failingReads: Int, errno: Int32) throws {
            let journal = try Journal.open(
                directory: self.directory.path, segmentBytes: 1 << 20, logger: Logger(level: .error)
            ) { _, _ in }
            self.journal = journal
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
                sequence: 1, eventID: "evt_1", tenant: "t1", destination: "crm", orderingKey: "pout_1",
                location: location, acceptedAtMs: event.acceptedAtMs, attempts: 2)
            let attempt = AttemptRecord(
                eventSequence: 1, tenant: "t1", destination: "crm", attempt: 3, outcome: .deadLettered,
                httpStatus: nil, atMs: 1_700_000_001_000, nextAttemptAtMs: nil,
                error: "cannot read the event from the journal")
            self.change = .deadLettered(delivery, attempt)

            var observer = RelayDeliveryObserver(
                journal: journal, deadLetters: self.deadLetters, replays: ReplayRegistry(logger: Logger(level: .error)),
                operational: OperationalWebhook(config: nil, logger: Logger(level: .error)),
                logger: Logger(level: .error))
            let reads = Atomic(0)
            observer.readEvent = { location throws(JournalError) in
                if reads.add(1, ordering: .relaxed).newValue <= failingReads {
                    throw JournalError(path: journal.directory, reason: "open failed", errno: errno)
                }
                return try journal.read(at: location)
            }
            self.observer = observer
        }

        deinit {
            self.journal.close()
            self.directory.remove()
        }

        /// Waits until the retried read has placed the dead letter, and returns the dead letters listed then.
        func listedAfterRetry() -> Int {
            let deadline = Date().addingTimeInterval(10)
            while self.deadLetters.unreadCount > 0 && Date() < deadline {
                Thread.sleep(forTimeInterval: 0.05)
            }
            #expect(self.deadLetters.unreadCount == 0)
            return self.deadLetters.count
        }
    }

    @Test func listedOnceDescriptorsAreBack() throws {
        let listing = try Listing(failingReads: 1, errno: EMFILE)
        listing.observer.journaled([listing.change])
        #expect(listing.deadLetters.count == 0)
        // The first retry comes after a second.
        #expect(listing.listedAfterRetry() == 1)
        #expect(listing.deadLetters.lookup([listing.key]).first?.event.portOutID == "pout_1")
    }

    @Test func damagedRecordNotRetried() throws {
        let listing = try Listing(failingReads: 1, errno: 0)
        listing.observer.journaled([listing.change])
        Thread.sleep(forTimeInterval: RelayDeliveryObserver.listingRetrySeconds[0] + 0.5)
        #expect(listing.deadLetters.count == 0)
        #expect(listing.deadLetters.unreadCount == 0)
    }

    /// A replay queues the delivery again while the listing waits for its read, and the replay's copy settles
    /// before or after the read: delivered leaves nothing listed, withdrawn lists the dead letter.
    @Test(arguments: [AttemptOutcome.delivered, .cancelled], [true, false])
    func replaySettledWhileListingRetried(outcome: AttemptOutcome, settledBeforeRead: Bool) throws {
        let listing = try Listing(failingReads: 1, errno: EMFILE)
        listing.observer.journaled([listing.change])
        listing.deadLetters.suspend(listing.key)
        if settledBeforeRead {
            listing.observer.journaled([.replaySettled(listing.key, outcome)])
            #expect(listing.listedAfterRetry() == (outcome == .cancelled ? 1 : 0))
        } else {
            #expect(listing.listedAfterRetry() == 0)
            listing.observer.journaled([.replaySettled(listing.key, outcome)])
            #expect(listing.deadLetters.count == (outcome == .cancelled ? 1 : 0))
        }
    }

    /// A replay's copy journaled again behind its owner's dead letter takes that dead letter off the list, as
    /// the replay's first record would have if the dead letter had come before it.
    @Test func copyQueuedBehindDeadLetterSuspendsIt() throws {
        let listing = try Listing(failingReads: 0, errno: 0)
        listing.deadLetters.suspend(listing.key)
        listing.observer.journaled([listing.change, .replayQueued(listing.key)])
        #expect(listing.deadLetters.count == 0)
        listing.observer.journaled([.replaySettled(listing.key, .delivered)])
        listing.observer.journaled([.replaySettled(listing.key, .cancelled)])
        #expect(listing.deadLetters.count == 0)
    }
}
