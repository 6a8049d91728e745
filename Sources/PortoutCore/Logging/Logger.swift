import Foundation
import Synchronization

public enum LogLevel: String, Sendable, CaseIterable, Comparable {
    case debug
    case info
    case warning
    case error

    private var order: Int {
        switch self {
        case .debug: return 0
        case .info: return 1
        case .warning: return 2
        case .error: return 3
        }
    }

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool {
        lhs.order < rhs.order
    }
}

/// A structured logger that writes one JSON object per line.
///
/// The message text is a constant such as `"webhook rejected"`; values go in fields with camelCase keys
/// (`tenant`, `destination`, `portOut`, `event`). Callers must never pass a secret, signature or account number.
/// Safe to use from any thread. Copies of a logger share its level, so `setLevel` changes it for all of them.
public struct Logger: Sendable {
    private let sink: LogSink
    private let sharedLevel: SharedLogLevel

    public init(level: LogLevel, sink: LogSink = .standardError) {
        self.sink = sink
        self.sharedLevel = SharedLogLevel(level)
    }

    public var level: LogLevel {
        self.sharedLevel.level
    }

    /// Changes the level of this logger and of every copy of it, as a configuration reload does.
    public func setLevel(_ level: LogLevel) {
        self.sharedLevel.set(level)
    }

    public func debug(_ message: String, _ fields: KeyValuePairs<String, JSONValue> = [:]) {
        self.log(.debug, message, fields)
    }

    public func info(_ message: String, _ fields: KeyValuePairs<String, JSONValue> = [:]) {
        self.log(.info, message, fields)
    }

    public func warning(_ message: String, _ fields: KeyValuePairs<String, JSONValue> = [:]) {
        self.log(.warning, message, fields)
    }

    public func error(_ message: String, _ fields: KeyValuePairs<String, JSONValue> = [:]) {
        self.log(.error, message, fields)
    }

    public func log(_ level: LogLevel, _ message: String, _ fields: KeyValuePairs<String, JSONValue>) {
        guard level >= self.level else { return }
        self.sink.emit(level: level, message: message, fields: fields)
    }

    public func isEnabled(_ level: LogLevel) -> Bool {
        level >= self.level
    }

    /// Writes the counts of lines suppressed so far, without waiting for their second to end, as a stop does
    /// before its last line.
    public func reportSuppressedLines() {
        self.sink.reportSuppressed(includingCurrentSecond: true)
    }
}

/// The destination of log lines, with a per-message rate limit so that a flood of identical events (bad
/// signatures from a misconfigured sender, say) cannot fill the disk.
///
/// The lines of a second over the limit are counted, and after that second one `log lines suppressed` line
/// reports the count for the message, so a flood that stops is still counted. Seconds are counted on the
/// monotonic clock, so that a step of the wall clock neither ends a second early nor holds one open.
public final class LogSink: Sendable {
    /// Lines per second allowed for one message text before further lines are counted instead of written.
    public let linesPerSecondPerMessage: Int
    private let writer: @Sendable ([UInt8]) -> Void
    private let state = Locked<State>(State())

    private struct State {
        var windows: [String: RateWindow] = [:]
        /// Set while a report of suppressed lines is scheduled.
        var isReportScheduled = false
    }

    private struct RateWindow {
        /// The monotonic second the window counts.
        var second: Int64
        var written: Int
        var suppressed: Int
        var level: LogLevel
        /// Wall-clock time of the first suppressed line, for the report.
        var firstSuppressedAtMs: Int64 = 0
    }

    public init(linesPerSecondPerMessage: Int = 50, writer: @escaping @Sendable ([UInt8]) -> Void) {
        self.linesPerSecondPerMessage = linesPerSecondPerMessage
        self.writer = writer
    }

    public static let standardError = LogSink { bytes in
        StandardError.write(bytes)
    }

    private static func monotonicMilliseconds() -> Int64 {
        Int64(DispatchTime.now().uptimeNanoseconds / 1_000_000)
    }

    func emit(level: LogLevel, message: String, fields: KeyValuePairs<String, JSONValue>) {
        let nowMs = WallClock.milliseconds()
        let monotonicMs = Self.monotonicMilliseconds()
        let second = monotonicMs / 1000
        let (isWritten, schedulesReport) = self.state.withLock { state -> (Bool, Bool) in
            var window = state.windows[message] ?? RateWindow(second: second, written: 0, suppressed: 0, level: level)
            if window.second != second && window.suppressed == 0 {
                window = RateWindow(second: second, written: 0, suppressed: 0, level: level)
            }
            if window.second == second && window.written < self.linesPerSecondPerMessage {
                window.written += 1
                state.windows[message] = window
                return (true, false)
            }
            // Over the limit, or in a later second but before the earlier second's report, which runs about 50 ms
            // into the next second. Such a line is counted in that report instead of being written.
            if window.suppressed == 0 {
                window.firstSuppressedAtMs = nowMs
            }
            window.suppressed += 1
            window.level = max(window.level, level)
            state.windows[message] = window
            defer { state.isReportScheduled = true }
            return (false, !state.isReportScheduled)
        }
        if schedulesReport {
            self.scheduleReport(afterMs: 1000 - monotonicMs % 1000 + 50)
        }
        guard isWritten else { return }
        self.write(level: level, message: message, atMs: nowMs, fields: Array(fields))
    }

    private func scheduleReport(afterMs delay: Int64) {
        DispatchQueue.global(qos: .utility).asyncAfter(deadline: .now() + .milliseconds(Int(delay))) {
            self.reportSuppressed(includingCurrentSecond: false)
        }
    }

    /// Writes one line for each message whose lines were suppressed in a second that has ended, or in any second
    /// with `includingCurrentSecond`, as a stop does. Schedules the next report while a flood goes on.
    public func reportSuppressed(includingCurrentSecond: Bool) {
        let nowMs = WallClock.milliseconds()
        let monotonicMs = Self.monotonicMilliseconds()
        let second = includingCurrentSecond ? Int64.max : monotonicMs / 1000
        let (reports, isFloodOngoing) = self.state.withLock { state -> ([(String, RateWindow)], Bool) in
            var reports: [(String, RateWindow)] = []
            for (message, window) in state.windows where window.suppressed > 0 && window.second < second {
                reports.append((message, window))
                state.windows[message] = nil
            }
            // Windows of ended seconds with nothing suppressed are dropped too, so the map holds only recent messages.
            state.windows = state.windows.filter { $0.value.second >= monotonicMs / 1000 }
            let isFloodOngoing = state.windows.values.contains { $0.suppressed > 0 }
            // A report already scheduled runs anyway; the flag only keeps a second one from being scheduled.
            if !includingCurrentSecond {
                state.isReportScheduled = isFloodOngoing
            }
            return (reports, isFloodOngoing && !includingCurrentSecond)
        }
        for (message, window) in reports.sorted(by: { $0.0 < $1.0 }) {
            self.write(
                level: window.level, message: "log lines suppressed", atMs: nowMs,
                fields: [
                    ("message", .string(message)), ("suppressedLines", .number(Double(window.suppressed))),
                    ("firstSuppressedAt", .string(RFC3339.format(epochMilliseconds: window.firstSuppressedAtMs))),
                    ("limitPerSecond", .number(Double(self.linesPerSecondPerMessage))),
                ])
        }
        if isFloodOngoing {
            self.scheduleReport(afterMs: 1000 - monotonicMs % 1000 + 50)
        }
    }

    private func write(level: LogLevel, message: String, atMs: Int64, fields: [(key: String, value: JSONValue)]) {
        var writer = JSONWriter(capacity: 160)
        writer.appendRaw("{\"ts\":")
        writer.writeString(RFC3339.format(epochMilliseconds: atMs))
        writer.appendRaw(",\"level\":")
        writer.writeString(level.rawValue)
        writer.appendRaw(",\"msg\":")
        writer.writeString(message)
        for (key, value) in fields {
            writer.appendRaw(",")
            writer.writeString(key)
            writer.appendRaw(":")
            writer.write(value)
        }
        writer.appendRaw("}\n")
        self.writer(writer.bytes)
    }
}

/// A log level on the heap, so that copies of a `Logger` share it.
final class SharedLogLevel: Sendable {
    private let index: Atomic<Int>

    init(_ level: LogLevel) {
        self.index = Atomic(LogLevel.allCases.firstIndex(of: level)!)
    }

    var level: LogLevel {
        LogLevel.allCases[self.index.load(ordering: .relaxed)]
    }

    func set(_ level: LogLevel) {
        self.index.store(LogLevel.allCases.firstIndex(of: level)!, ordering: .relaxed)
    }
}
