import PortoutCore
import PortoutCrypto

/// The `name=value` pairs of a URL query, percent-decoded. A name given more than once keeps its first value
/// and is listed in `repeated`.
struct QueryParameters {
    private var values: [String: String] = [:]
    /// Names whose value is not valid percent-encoded UTF-8, so that callers reject them instead of acting as
    /// if the parameter were absent.
    private(set) var malformed: Set<String> = []
    /// Names given more than once, which callers reject rather than pick one value, since a proxy or cache in
    /// front of the relay may have picked another.
    private(set) var repeated: Set<String> = []

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
            } else {
                self.repeated.insert(name)
            }
        }
    }

    /// Returns an issue for each malformed or repeated parameter, among `names` only when they are given.
    func issues(among names: [String]? = nil) -> [ValidationIssue] {
        guard !self.malformed.isEmpty || !self.repeated.isEmpty else { return [] }
        let selected = names.map(Set.init)
        let malformed = self.malformed.filter { selected?.contains($0) ?? true }.sorted()
        let repeated = self.repeated.subtracting(self.malformed).filter { selected?.contains($0) ?? true }.sorted()
        return malformed.map { ValidationIssue(field: $0, message: "is not valid percent-encoded UTF-8") }
            + repeated.map { ValidationIssue(field: $0, message: "is given more than once") }
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
        // Most path segments and values have nothing to decode, and the text is valid UTF-8 already.
        if !text.utf8.contains(where: { $0 == UInt8(ascii: "%") || ($0 == UInt8(ascii: "+") && plusIsSpace) }) {
            return String(text)
        }
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
