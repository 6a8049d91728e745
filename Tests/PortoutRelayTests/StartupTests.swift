import Foundation
import Dispatch
import PortoutCore
import PortoutHTTP
import PortoutJournal
import PortoutTestSupport
import Testing

@testable import PortoutRelay

@Suite(.serialized)
struct StartupTests {
    @Test func secondRelayOnSameDataDirectoryFails() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        try Self.expectJournalInUse(harness, "a second relay opened a journal that is in use")
    }

    /// The lock on the journal directory still holds after someone deletes journal.lock, so a second relay
    /// cannot lock a new file of the same name and write beside the first.
    @Test func deletedLockFileStillKeepsSecondRelayOut() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        try FileManager.default.removeItem(atPath: harness.directory.path + "/data/journal/journal.lock")
        try Self.expectJournalInUse(harness, "a second relay opened a journal whose lock file was deleted")
    }

    /// Starts a second relay on the data directory of `harness`'s running relay and expects it to fail.
    static func expectJournalInUse(_ harness: RelayHarness, _ failure: Comment) throws {
        var config = try harness.config
        config.listen = ListenAddress(host: "127.0.0.1", port: 0)
        do {
            let second = try Relay(config: config, logger: Logger(level: .error))
            second.shutdown()
            Issue.record(failure)
        } catch let error as JournalError {
            #expect(error.reason == "the journal is in use by another process")
        }
    }

    /// An attempt whose event record was lost to damage still reserves the event's sequence, so that a new event
    /// does not take the same number and make the journal's records about it ambiguous.
    @Test func orphanAttemptReservesItsSequence() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        harness.stop()
        let journalDirectory = harness.directory.path + "/data/journal"
        let journal = try Journal.open(directory: journalDirectory, segmentBytes: 1 << 20, logger: Logger(level: .error)) { _, _ in }
        let written = DispatchSemaphore(value: 0)
        journal.appendAll([.attempt(AttemptRecord(
            eventSequence: 41, tenant: "t1", destination: "d1", attempt: 1, outcome: .retryScheduled, httpStatus: 503,
            atMs: 1, nextAttemptAtMs: 2, error: "destination answered 503"))]) { _ in written.signal() }
        written.wait()
        journal.close()

        try harness.start()
        #expect(try harness.post(Events.portOut("pout_seq", status: "initiated")).status == 202)
        harness.stop()
        var sequences: [UInt64] = []
        let reopened = try Journal.open(directory: journalDirectory, segmentBytes: 1 << 20, logger: Logger(level: .error)) {
            record, _ in
            if case .event(let event) = record { sequences.append(event.sequence) }
        }
        reopened.close()
        #expect(sequences == [42])
    }

    @Test func secondRelayOnSamePortFails() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        let other = TemporaryDirectory()
        defer { other.remove() }
        var config = try harness.config
        config.listen = ListenAddress(host: "127.0.0.1", port: harness.port)
        config.dataDir = other.path + "/data"
        do {
            let second = try Relay(config: config, logger: Logger(level: .error))
            second.shutdown()
            Issue.record("a second relay shared a port that another listener holds")
        } catch let error as SystemError {
            #expect(error.errno == EADDRINUSE)
        }
        // The first relay still serves every connection.
        #expect(try harness.client().request("GET", "/healthz")?.status == 200)
    }

    /// A start that cannot bind its listener sends none of the deliveries the journal has pending.
    @Test func failedBindSendsNothing() throws {
        // The first attempt fails and the relay stops before its retry, which is due by the next start.
        let sink = try RecordingSink { index, _ in RecordingSink.Reply(status: index == 0 ? 503 : 204) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url, retrySchedule: "[0.3]"))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_b", status: "initiated")).status == 202)
        #expect(waitUntil { sink.received.count == 1 })
        harness.stop()
        Thread.sleep(forTimeInterval: 0.5)

        var config = try harness.config
        config.listen = ListenAddress(host: "127.0.0.1", port: sink.port)
        for _ in 0..<5 {
            do {
                let relay = try Relay(config: config, logger: Logger(level: .error))
                relay.shutdown()
                Issue.record("a relay started on a port that the sink holds")
            } catch let error as SystemError {
                #expect(error.errno == EADDRINUSE)
            }
        }
        Thread.sleep(forTimeInterval: 0.3)
        #expect(sink.received.count == 1)

        try harness.start()
        #expect(waitUntil { sink.received.count == 2 })
    }
}
