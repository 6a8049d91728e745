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
}
