import Foundation
import PortoutCore
import Synchronization
import Testing

/// The per-message rate limit of log lines, and the line that reports what it suppressed.
struct LogSinkTests {
    /// Collects the lines a sink writes, parsed.
    final class Collected: Sendable {
        private let lines = Mutex<[JSONObject]>([])

        var all: [JSONObject] {
            self.lines.withLock { $0 }
        }

        func append(_ bytes: [UInt8]) {
            let object = (try? JSONParser.parse(bytes))?.objectValue ?? JSONObject()
            self.lines.withLock { $0.append(object) }
        }
    }

    /// Polls `condition` for up to five seconds.
    static func waitFor(_ condition: () -> Bool) -> Bool {
        for _ in 0..<500 {
            if condition() {
                return true
            }
            usleep(10_000)
        }
        return condition()
    }

    /// A flood that stops is still reported: nothing later has to be logged for the count to appear.
    @Test func floodThatStopsIsReported() {
        let collected = Collected()
        let logger = Logger(level: .info, sink: LogSink(linesPerSecondPerMessage: 3) { collected.append($0) })
        // Waits for the first half of a second of the monotonic clock, which the sink counts by, so that all ten
        // lines fall in one second.
        while DispatchTime.now().uptimeNanoseconds / 1_000_000 % 1000 > 500 {
            usleep(10_000)
        }
        for index in 0..<10 {
            logger.warning("webhook rejected", ["index": .number(Double(index))])
        }
        logger.info("relay started")
        #expect(collected.all.filter { $0["msg"] == "webhook rejected" }.count == 3)
        #expect(collected.all.filter { $0["msg"] == "relay started" }.count == 1)

        #expect(Self.waitFor { collected.all.contains { $0["msg"] == "log lines suppressed" } })
        let reports = collected.all.filter { $0["msg"] == "log lines suppressed" }
        #expect(reports.count == 1)
        #expect(reports.first?["message"] == "webhook rejected")
        #expect(reports.first?["suppressedLines"] == 7)
        #expect(reports.first?["level"] == "warning")
        #expect(reports.first?["limitPerSecond"] == 3)

        // The next second starts with the full allowance again.
        usleep(200_000)
        logger.warning("webhook rejected", ["index": 10])
        #expect(collected.all.filter { $0["msg"] == "webhook rejected" }.count == 4)
    }

    /// A stop reports the count of the second still under way at once, and only once.
    @Test func stopReportsSecondUnderWay() {
        let collected = Collected()
        let logger = Logger(level: .info, sink: LogSink(linesPerSecondPerMessage: 2) { collected.append($0) })
        for index in 0..<5 {
            logger.warning("webhook rejected", ["index": .number(Double(index))])
        }
        logger.reportSuppressedLines()
        let reports = { collected.all.filter { $0["msg"] == "log lines suppressed" } }
        let written = collected.all.filter { $0["msg"] == "webhook rejected" }.count
        #expect(reports().count == 1)
        #expect(reports().first?["suppressedLines"] == .number(Double(5 - written)))
        usleep(1_200_000)
        #expect(reports().count == 1)
    }
}
