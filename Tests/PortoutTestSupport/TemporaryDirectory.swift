import Foundation

/// A fresh directory under the system's temporary directory, removed by `remove()`.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(prefix: String = "portout-test") {
        let name = "\(prefix)-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))"
        self.path = NSTemporaryDirectory() + name
        try! FileManager.default.createDirectory(atPath: self.path, withIntermediateDirectories: true)
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: self.path)
    }

    public func file(_ name: String) -> String {
        self.path + "/" + name
    }
}

/// Polls `condition` every `pollSeconds` until it is true or `timeoutSeconds` pass, and returns its last value.
public func waitUntil(timeoutSeconds: Double = 10, pollSeconds: Double = 0.01, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeoutSeconds)
    while Date() < deadline {
        if condition() { return true }
        Thread.sleep(forTimeInterval: pollSeconds)
    }
    return condition()
}

/// Runs a program to completion and returns its exit status; -1 if it could not be started.
public func runProgram(_ executable: String, _ arguments: [String]) -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    do {
        try process.run()
    } catch {
        return -1
    }
    process.waitUntilExit()
    return process.terminationStatus
}

/// Runs a program with standard input from `inputPath` and returns its exit status and its output, standard
/// error included.
public func runProgramCapturingOutput(_ executable: String, _ arguments: [String], inputPath: String) -> (Int32, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    guard let input = FileHandle(forReadingAtPath: inputPath) else {
        return (-1, "cannot open \(inputPath)")
    }
    process.standardInput = input
    do {
        try process.run()
    } catch {
        return (-1, "cannot run \(executable): \(error)")
    }
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, text)
}
