import Foundation
import PortoutCore
import PortoutTestSupport
import Testing

@testable import PortoutHTTP

/// Thousands of idle connections held open while normal requests go on over loopback.
///
/// This checks behaviour only: every request gets a correct response within a liveness bound of seconds, and
/// every idle connection stays open. How much the idle connections slow other requests down is for the
/// benchmarks to measure.
struct IdleConnectionFloodTests {
    static let idleCount = 2_000
    static let freshRequests = 200
    /// Liveness bound for each response, far beyond any normal response time on loopback.
    static let responseTimeoutSeconds = 5

    @Test func idleConnectionsLeaveOthersServed() throws {
        // The test process has both ends of every connection open, besides the descriptors of other suites.
        let openFileLimit = OpenFileLimit.raiseToHardLimit()
        try #require(openFileLimit >= 2 * Self.idleCount + 1_000, "RLIMIT_NOFILE is only \(openFileLimit)")
        // Far past the test's run time even under a sanitizer, so that only the server's handling of load could
        // close an idle connection. Every connection comes from 127.0.0.1, so the per-client limit is lifted to
        // test the server's handling of that many connections rather than the limit.
        let server = try RecordingServer { limits in
            limits.idleTimeoutMs = 600_000
            limits.maxConnectionsPerClient = limits.maxConnections
        }
        defer { server.shutdown() }

        // Even-numbered connections never send a byte. Odd-numbered ones finish one keep-alive request and then
        // go quiet, so both ways of being idle are covered.
        var idle: [LoopbackClient] = []
        var warmUpFailures: [Int] = []
        for index in 0..<Self.idleCount {
            let client = try LoopbackClient(port: server.port, readTimeoutSeconds: Self.responseTimeoutSeconds)
            if index % 2 == 1, client.request("GET", "/warm-up/\(index)")?.text != "GET /warm-up/\(index) 0" {
                warmUpFailures.append(index)
            }
            idle.append(client)
        }
        #expect(warmUpFailures.isEmpty, "warm-up requests not answered correctly: \(warmUpFailures.prefix(10))")
        #expect(waitUntil { server.connectionCount == Self.idleCount }, "open: \(server.connectionCount)")

        // Normal traffic on fresh connections, plain and with bodies, and on one keep-alive connection.
        var freshFailures: [String] = []
        let keepAlive = try LoopbackClient(port: server.port, readTimeoutSeconds: Self.responseTimeoutSeconds)
        for index in 0..<Self.freshRequests {
            let fresh = try LoopbackClient(port: server.port, readTimeoutSeconds: Self.responseTimeoutSeconds)
            let body = Array("fresh request \(index)".utf8)
            let response = fresh.request("POST", "/fresh/\(index)", body: body)
            if response?.status != 200 || response?.text != "POST /fresh/\(index) \(body.count)" {
                freshFailures.append("fresh \(index): \(response.map { "\($0.status) \($0.text)" } ?? "no response")")
            }
            let reused = keepAlive.request("GET", "/kept/\(index)")
            if reused?.text != "GET /kept/\(index) 0" {
                freshFailures.append(
                    "keep-alive \(index): \(reused.map { "\($0.status) \($0.text)" } ?? "no response")"
                )
            }
        }
        #expect(freshFailures.isEmpty, "\(freshFailures.count) failures, first: \(freshFailures.prefix(5))")

        // The idle connections are untouched: the server neither wrote to nor closed any of them.
        let disturbed = idle.indices.filter { !idle[$0].isOpenAndSilent() }
        #expect(disturbed.isEmpty, "\(disturbed.count) idle connections closed or written to: \(disturbed.prefix(10))")
        // Fresh connections close as their clients go, leaving the idle ones and the keep-alive one.
        #expect(waitUntil { server.connectionCount == Self.idleCount + 1 }, "open: \(server.connectionCount)")

        // Every idle connection still serves a request.
        var lateFailures: [Int] = []
        for (index, client) in idle.enumerated() {
            if client.request("GET", "/late/\(index)")?.text != "GET /late/\(index) 0" {
                lateFailures.append(index)
            }
        }
        #expect(lateFailures.isEmpty, "idle connections not served afterwards: \(lateFailures.prefix(10))")
        let expectedRequests = Self.idleCount / 2 + 2 * Self.freshRequests + Self.idleCount
        #expect(server.requests.count == expectedRequests)

        idle.removeAll()
        _ = consume keepAlive
        #expect(waitUntil { server.connectionCount == 0 }, "open after every client closed: \(server.connectionCount)")
    }
}
