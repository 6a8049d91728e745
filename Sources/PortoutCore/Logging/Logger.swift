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
}

/// The destination of log lines, with a per-message rate limit so that a flood of identical events (bad
/// signatures from a misconfigured sender, say) cannot fill the disk.
public final class LogSink: Sendable {
    /// Lines per second allowed for one message text before further lines are counted instead of written.
    public let linesPerSecondPerMessage: Int
    private let writer: @Sendable ([UInt8]) -> Void
    private let state = Locked<[String: RateWindow]>([:])

    private struct RateWindow {
        var second: Int64
        var written: Int
        var suppressed: Int
    }

    public init(linesPerSecondPerMessage: Int = 50, writer: @escaping @Sendable ([UInt8]) -> Void) {
        self.linesPerSecondPerMessage = linesPerSecondPerMessage
        self.writer = writer
    }

    public static let standardError = LogSink { bytes in
        StandardError.write(bytes)
    }

    func emit(level: LogLevel, message: String, fields: KeyValuePairs<String, JSONValue>) {
        let nowMilliseconds = Int64(Date().timeIntervalSince1970 * 1000)
        let second = nowMilliseconds / 1000
        let suppressed: Int? = self.state.withLock { windows in
            var window = windows[message] ?? RateWindow(second: second, written: 0, suppressed: 0)
            var carried = 0
            if window.second != second {
                carried = window.suppressed
                window = RateWindow(second: second, written: 0, suppressed: 0)
            }
            guard window.written < self.linesPerSecondPerMessage else {
                window.suppressed += 1
                windows[message] = window
                return nil
            }
            window.written += 1
            windows[message] = window
            return carried
        }
        guard let suppressed else { return }

        var writer = JSONWriter(capacity: 160)
        writer.appendRaw("{\"ts\":")
        writer.writeString(RFC3339.format(epochMilliseconds: nowMilliseconds))
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
        if suppressed > 0 {
            writer.appendRaw(",\"suppressedLines\":\(suppressed)")
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
