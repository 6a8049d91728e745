import Foundation
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
        var config = try harness.config
        config.listen = ListenAddress(host: "127.0.0.1", port: 0)
        do {
            let second = try Relay(config: config, logger: Logger(level: .error))
            second.shutdown()
            Issue.record("a second relay opened a journal that is in use")
        } catch let error as JournalError {
            #expect(error.reason == "the journal is in use by another process")
        }
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
