import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A Python program running in the background, with its standard output.
public final class PythonProcess {
    let process = Process()
    let output = Pipe()

    /// The interpreter itself rather than a wrapper such as a pyenv shim, so that terminating the process
    /// stops the program and not only the wrapper.
    public static let python: String = {
        let probe = Process()
        let output = Pipe()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import sys; print(sys.executable)"]
        probe.standardOutput = output
        try! probe.run()
        probe.waitUntilExit()
        let path = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return path.trimmingCharacters(in: .whitespacesAndNewlines)
    }()

    /// Runs a script file.
    public convenience init(script: String, arguments: [String]) throws {
        try self.init(interpreterArguments: [script] + arguments)
    }

    /// Runs `python3 -c code` with `arguments` in `sys.argv[1...]`.
    public convenience init(code: String, arguments: [String]) throws {
        try self.init(interpreterArguments: ["-c", code] + arguments)
    }

    private init(interpreterArguments: [String]) throws {
        self.process.executableURL = URL(fileURLWithPath: Self.python)
        self.process.arguments = interpreterArguments
        self.process.standardOutput = self.output
        try self.process.run()
    }

    public func firstLine() -> String {
        var line: [UInt8] = []
        while let byte = try? self.output.fileHandleForReading.read(upToCount: 1), let first = byte.first,
            first != 10
        {
            line.append(first)
        }
        return String(decoding: line, as: UTF8.self)
    }

    /// Waits for the program to exit and returns the rest of its output.
    public func finish() -> String {
        let text = String(decoding: self.output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        self.process.waitUntilExit()
        return text
    }

    public var exitStatus: Int32 {
        self.process.terminationStatus
    }

    public func stop() {
        // SIGKILL because the test runner's threads block SIGTERM and a spawned child inherits that mask.
        if self.process.isRunning {
            kill(self.process.processIdentifier, SIGKILL)
        }
        self.process.waitUntilExit()
    }
}
