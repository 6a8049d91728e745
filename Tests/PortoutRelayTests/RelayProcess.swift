import Foundation
import PortoutCore
import PortoutTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The `portout-relay serve` executable running as a child process, for tests of signal handling.
final class RelayProcess {
    static let binary = CarrierFeedTests.repositoryRoot + "/.build/debug/portout-relay"

    let process = Process()
    let logPath: String

    /// Starts the relay on `configPath` and, unless `waitForStart` is false, waits until it logs that it started.
    /// `fileSizeLimitKiB` starts it under `ulimit -f`, through a shell that then runs it in its place.
    /// `environment` adds to the test runner's environment.
    init(
        configPath: String, logPath: String, waitForStart: Bool = true, fileSizeLimitKiB: Int? = nil,
        environment: [String: String] = [:]
    ) throws {
        self.logPath = logPath
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        if let fileSizeLimitKiB {
            // SIGXFSZ starts at its default action, which ends the process, since the test runner may ignore it and
            // a child inherits that. ulimit -f counts 1024-byte blocks in bash.
            self.process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            self.process.arguments = [
                "--default-signal=XFSZ", "/bin/bash", "-c", "ulimit -f \(fileSizeLimitKiB); exec \"$0\" \"$@\"",
                Self.binary, "serve", "--config", configPath,
            ]
        } else {
            self.process.executableURL = URL(fileURLWithPath: Self.binary)
            self.process.arguments = ["serve", "--config", configPath]
        }
        if !environment.isEmpty {
            self.process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        self.process.standardError = FileHandle(forWritingAtPath: logPath)
        try self.process.run()
        guard waitForStart else { return }
        guard waitUntil(timeoutSeconds: 20, { self.started != nil || !self.process.isRunning }), self.started != nil else {
            self.kill()
            throw RelayProcessError(log: self.logText)
        }
    }

    var logText: String {
        (try? String(contentsOfFile: self.logPath, encoding: .utf8)) ?? ""
    }

    /// Log lines as JSON objects.
    var logLines: [JSONObject] {
        self.logText.split(separator: "\n").compactMap { (try? JSONParser.parse(String($0)))?.objectValue }
    }

    func logLines(_ message: String) -> [JSONObject] {
        self.logLines.filter { $0["msg"]?.stringValue == message }
    }

    var started: JSONObject? {
        self.logLines("relay started").last
    }

    /// The port of the webhook listener, from the start line.
    var port: Int {
        let listen = self.started?["listen"]?.stringValue ?? ""
        return Int(listen.split(separator: ":").last ?? "") ?? 0
    }

    /// The port of the admin listener, from the start line.
    var adminPort: Int {
        let listen = self.started?["adminListen"]?.stringValue ?? ""
        return Int(listen.split(separator: ":").last ?? "") ?? 0
    }

    /// Reads a size in KiB from `/proc/<pid>/status`, such as `VmRSS` or `RssAnon`, or nil if the process is gone.
    func memoryKilobytes(_ field: String) -> Int? {
        let path = "/proc/\(self.process.processIdentifier)/status"
        guard let status = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            // For example "RssAnon:\t    5120 kB".
            return line.split(separator: " ").dropLast().last.flatMap { Int($0) }
        }
        return nil
    }

    func signal(_ number: Int32) {
        Glibc.kill(self.process.processIdentifier, number)
    }

    /// Waits for the process to exit and returns its status, or nil if it is still running after the timeout.
    func waitForExit(timeoutSeconds: Double) -> Int32? {
        guard waitUntil(timeoutSeconds: timeoutSeconds, { !self.process.isRunning }) else { return nil }
        return self.process.terminationStatus
    }

    /// Stops the process at once; test threads block SIGTERM, so only SIGKILL is sure to end it.
    func kill() {
        if self.process.isRunning {
            Glibc.kill(self.process.processIdentifier, SIGKILL)
            self.process.waitUntilExit()
        }
    }
}

struct RelayProcessError: Error, CustomStringConvertible {
    let log: String

    var description: String {
        "the relay did not start:\n\(self.log)"
    }
}
