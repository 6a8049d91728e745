/// A command's arguments after the command words: `--name value` options and `--flag` switches.
public struct CommandArguments {
    private var options: [String: String] = [:]
    private var flags: Set<String> = []

    /// Parses `arguments`; `valueOptions` take a value, `flagOptions` do not. Throws on anything else.
    public init(_ arguments: ArraySlice<String>, valueOptions: Set<String>, flagOptions: Set<String> = [])
        throws(UsageError)
    {
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let argument = arguments[index]
            var name = argument
            var inlineValue: String?
            if let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inlineValue = String(argument[argument.index(after: equals)...])
            }
            if valueOptions.contains(name) {
                if let inlineValue {
                    self.options[name] = inlineValue
                } else {
                    index += 1
                    guard index < arguments.endIndex else { throw UsageError("\(name) needs a value") }
                    self.options[name] = arguments[index]
                }
            } else if flagOptions.contains(argument) {
                self.flags.insert(argument)
            } else {
                throw UsageError("unknown argument \(argument)")
            }
            index += 1
        }
    }

    public subscript(option: String) -> String? {
        self.options[option]
    }

    public func has(_ flag: String) -> Bool {
        self.flags.contains(flag)
    }
}

/// A command line that cannot be run as given; the message is printed with the usage text.
public struct UsageError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// A command that was invoked correctly but could not do its work, such as a replay the relay rejected.
public struct CommandError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
