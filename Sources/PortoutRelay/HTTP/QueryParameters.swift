import PortoutCrypto

/// The `name=value` pairs of a URL query, percent-decoded; the first occurrence of a name wins.
struct QueryParameters {
    private var values: [String: String] = [:]
    /// Names whose value is not valid percent-encoded UTF-8, so that callers reject them instead of acting as
    /// if the parameter were absent.
    private(set) var malformed: Set<String> = []

    init(_ query: Substring?) {
        guard let query else { return }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = Self.decode(parts[0]) else {
                self.malformed.insert(String(parts[0]))
                continue
            }
            guard let value = parts.count > 1 ? Self.decode(parts[1]) : "" else {
                self.malformed.insert(name)
                continue
            }
            if self.values[name] == nil {
                self.values[name] = value
            }
        }
    }

    /// The names of the well-formed parameters.
    var names: [String] {
        Array(self.values.keys)
    }

    subscript(name: String) -> String? {
        self.values[name]
    }

    /// Decodes `%XX` escapes, and `+` as a space unless `plusIsSpace` is false (as in a path); nil if an escape
    /// is malformed or the result is not UTF-8.
    static func decode(_ text: Substring, plusIsSpace: Bool = true) -> String? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+") where plusIsSpace:
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(ByteEncoding.nibble), let low = iterator.next().flatMap(ByteEncoding.nibble)
                else { return nil }
                bytes.append(high << 4 | low)
            default:
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

}
