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
