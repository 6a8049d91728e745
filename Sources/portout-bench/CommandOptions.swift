/// Returns the value after `name` in `arguments`, or nil when the option is absent or has no value.
func option(_ name: String, in arguments: [String]) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

/// A command-line value that is missing or out of range, reported with the option's name.
struct UsageError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// Returns the option's value as an integer in `range`, `defaultValue` when absent, or throws `UsageError`.
func integerOption(
    _ name: String,
    in arguments: [String],
    range: ClosedRange<Int>,
    default defaultValue: Int? = nil
) throws -> Int {
    guard let text = option(name, in: arguments) else {
        guard let defaultValue else { throw UsageError("\(name) is required") }
        return defaultValue
    }
    guard let value = Int(text), range.contains(value) else {
        throw UsageError("\(name) must be an integer from \(range.lowerBound) to \(range.upperBound), not \"\(text)\"")
    }
    return value
}

/// Throws `UsageError` unless `arguments` are pairs of a known option and its value, each option given once, so
/// that a mistyped or repeated option stops the run instead of leaving a default in place.
func checkOptions(_ arguments: [String], known: [String], command: String) throws {
    var seen: Set<String> = []
    var index = 0
    while index < arguments.count {
        let name = arguments[index]
        guard known.contains(name) else {
            throw UsageError("\(command) has no option \"\(name)\". Its options are \(known.joined(separator: ", ")).")
        }
        guard index + 1 < arguments.count, !arguments[index + 1].hasPrefix("--") else {
            throw UsageError("\(name) needs a value")
        }
        guard seen.insert(name).inserted else {
            throw UsageError("\(name) is given more than once. Give it once.")
        }
        index += 2
    }
}
