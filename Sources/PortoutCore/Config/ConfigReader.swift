import Foundation

/// Reads typed values out of a JSON document while collecting every problem with its JSON path.
///
/// Each accessor returns nil (or the default) after recording a problem, so one pass over a file reports all its
/// faults instead of stopping at the first.
struct ConfigReader {
    private(set) var problems: [ConfigProblem] = []

    mutating func fail(_ path: String, _ message: String) {
        self.problems.append(ConfigProblem(path: path, message: message))
    }

    /// Records a problem for each key of the object that is not in `known`, to catch misspelt keys.
    mutating func rejectUnknownKeys(_ object: JSONObject, _ path: String, known: Set<String>) {
        for key in object.keys where !known.contains(key) {
            self.fail("\(path).\(key)", "unknown key; expected one of \(known.sorted().joined(separator: ", "))")
        }
    }

    mutating func object(_ value: JSONValue?, _ path: String) -> JSONObject? {
        guard let value else { return nil }
        guard let object = value.objectValue else {
            self.fail(path, "must be an object, not \(value.typeName)")
            return nil
        }
        return object
    }

    /// Records a problem with a URL the relay sends requests to, so that it shows at start and not at every
    /// attempt. libcurl rejects a port outside 1 to 65535 and never sends a fragment, and a `%` must be followed
    /// by two hex digits. `example` is a valid URL for messages. `isBase` marks a URL that paths are appended to.
    mutating func checkHTTPURL(_ url: String, _ path: String, example: String, isBase: Bool = false) {
        // A fault in the raw text ends the check, since the parts parsed from such text would be wrong too.
        let lowercased = url.lowercased()
        guard lowercased.hasPrefix("http://") || lowercased.hasPrefix("https://") else {
            self.fail(path, "must start with http:// or https://, as in \(example)")
            return
        }
        guard !url.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) else {
            self.fail(path, "must not contain spaces or control characters; write a space as %20")
            return
        }
        guard url.utf8.allSatisfy({ $0 < 0x80 }) else {
            self.fail(path, "must be ASCII: percent-encode other characters, and write a host name in its xn-- form")
            return
        }
        guard Self.hasValidEscapes(url) else {
            self.fail(path, "contains a % that is not followed by two hexadecimal digits; write a percent sign as %25")
            return
        }

        guard let components = URLComponents(string: url), let host = components.host, !host.isEmpty else {
            self.fail(path, "must be a valid URL with a host, as in \(example)")
            return
        }
        let authority = url.drop { $0 != ":" }.dropFirst(3).prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if authority.filter({ $0 == "@" }).count > 1 {
            self.fail(path, "has more than one @ before the host; write an @ in a user name or password as %40")
        }
        if host.hasPrefix("["), !Self.isIPv6Literal(host) {
            self.fail(path, "has a host in brackets that is not an IPv6 address")
        }

        if let port = components.port, !(1...65535).contains(port) {
            self.fail(path, "has port \(port), which is not between 1 and 65535")
        }
        if components.fragment != nil {
            self.fail(path, "must not have a #fragment, which is never sent: remove it")
        }
        if isBase, components.query != nil {
            self.fail(path, "must not have a ?query, because request paths are appended to this URL")
        }
    }

    /// Returns whether `host` is an IPv6 address in brackets, with or without a zone such as `%25eth0`.
    private static func isIPv6Literal(_ host: String) -> Bool {
        guard host.hasPrefix("["), host.hasSuffix("]") else { return false }
        let address = host.dropFirst().dropLast().prefix { $0 != "%" }
        var parsed = in6_addr()
        return inet_pton(AF_INET6, String(address), &parsed) == 1
    }

    /// Returns whether every `%` in `text` is followed by two hex digits.
    private static func hasValidEscapes(_ text: String) -> Bool {
        var bytes = text.utf8.makeIterator()
        while let byte = bytes.next() {
            guard byte == UInt8(ascii: "%") else { continue }
            guard let high = bytes.next(), let low = bytes.next() else { return false }
            guard ASCII.hexDigitValue(high) != nil, ASCII.hexDigitValue(low) != nil else { return false }
        }
        return true
    }

    mutating func requiredString(_ object: JSONObject, _ key: String, _ path: String) -> String? {
        guard let value = object[key] else {
            self.fail("\(path).\(key)", "is required")
            return nil
        }
        return self.string(value, "\(path).\(key)")
    }

    mutating func optionalString(_ object: JSONObject, _ key: String, _ path: String) -> String? {
        guard let value = object[key] else { return nil }
        return self.string(value, "\(path).\(key)")
    }

    mutating func string(_ value: JSONValue, _ path: String) -> String? {
        guard let string = value.stringValue else {
            self.fail(path, "must be a string, not \(value.typeName)")
            return nil
        }
        guard !string.isEmpty else {
            self.fail(path, "must not be empty")
            return nil
        }
        return string
    }

    mutating func integer(
        _ object: JSONObject, _ key: String, _ path: String, default defaultValue: Int, range: ClosedRange<Int>
    ) -> Int {
        guard let value = object[key] else { return defaultValue }
        guard let integer = value.intValue else {
            self.fail("\(path).\(key)", "must be an integer, not \(value.typeName == "number" ? "a fraction" : value.typeName)")
            return defaultValue
        }
        guard range.contains(integer) else {
            self.fail("\(path).\(key)", "must be between \(range.lowerBound) and \(range.upperBound), not \(integer)")
            return defaultValue
        }
        return integer
    }

    mutating func number(
        _ object: JSONObject, _ key: String, _ path: String, default defaultValue: Double, range: ClosedRange<Double>
    ) -> Double {
        guard let value = object[key] else { return defaultValue }
        guard let number = value.numberValue else {
            self.fail("\(path).\(key)", "must be a number, not \(value.typeName)")
            return defaultValue
        }
        guard range.contains(number) else {
            self.fail("\(path).\(key)", "must be between \(range.lowerBound) and \(range.upperBound), not \(number)")
            return defaultValue
        }
        return number
    }

    mutating func bool(_ object: JSONObject, _ key: String, _ path: String, default defaultValue: Bool) -> Bool {
        guard let value = object[key] else { return defaultValue }
        guard let flag = value.boolValue else {
            self.fail("\(path).\(key)", "must be true or false, not \(value.typeName)")
            return defaultValue
        }
        return flag
    }

    /// Reads an array of non-empty strings; a missing key gives nil.
    mutating func stringArray(_ object: JSONObject, _ key: String, _ path: String) -> [String]? {
        guard let value = object[key] else { return nil }
        guard let elements = value.arrayValue else {
            self.fail("\(path).\(key)", "must be an array of strings, not \(value.typeName)")
            return nil
        }
        var strings: [String] = []
        for (index, element) in elements.enumerated() {
            if let string = self.string(element, "\(path).\(key)[\(index)]") {
                strings.append(string)
            }
        }
        return strings
    }

    /// Reads an array of objects; a missing key gives an empty array.
    mutating func objectArray(_ object: JSONObject, _ key: String, _ path: String) -> [(JSONObject, String)] {
        guard let value = object[key] else { return [] }
        guard let elements = value.arrayValue else {
            self.fail("\(path).\(key)", "must be an array, not \(value.typeName)")
            return []
        }
        var objects: [(JSONObject, String)] = []
        for (index, element) in elements.enumerated() {
            let elementPath = "\(path).\(key)[\(index)]"
            if let object = self.object(element, elementPath) {
                objects.append((object, elementPath))
            }
        }
        return objects
    }
}

/// One fault in a configuration file, named by its JSON path (`$.tenants[0].verify.scheme`).
public struct ConfigProblem: Sendable, Equatable, CustomStringConvertible {
    public let path: String
    public let message: String

    public var description: String {
        "\(self.path): \(self.message)"
    }
}

/// A configuration file that cannot be used, with every problem found in it.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public let file: String
    public let problems: [ConfigProblem]

    public init(file: String, problems: [ConfigProblem]) {
        self.file = file
        self.problems = problems
    }

    public var description: String {
        let lines = self.problems.map { "  \($0)" }.joined(separator: "\n")
        return "invalid configuration in \(self.file) (\(self.problems.count) \(self.problems.count == 1 ? "problem" : "problems")):\n\(lines)"
    }
}
