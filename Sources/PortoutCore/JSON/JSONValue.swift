import Glibc

/// A parsed JSON value.
///
/// Objects keep their members in document order; the parser rejects duplicate keys, so a lookup by key is
/// unambiguous.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// The name of this value's JSON type, as used in validation messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let value) = self { return value }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var numberValue: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    /// The number as an `Int` when it is integral and in range, otherwise nil.
    public var intValue: Int? {
        guard case .number(let value) = self else { return nil }
        return Int(exactly: value)
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

/// A JSON object's members in document order.
public struct JSONObject: Sendable, Equatable {
    public var members: [(key: String, value: JSONValue)]

    public init(_ members: [(key: String, value: JSONValue)] = []) {
        self.members = members
    }

    /// The member's value; setting replaces it in place or appends a new member, and setting nil removes it.
    public subscript(key: String) -> JSONValue? {
        get {
            for member in self.members where Self.sameKey(member.key, key) {
                return member.value
            }
            return nil
        }
        set {
            let index = self.members.firstIndex { Self.sameKey($0.key, key) }
            switch (index, newValue) {
            case (let index?, let value?): self.members[index].value = value
            case (let index?, nil): self.members.remove(at: index)
            case (nil, let value?): self.members.append((key, value))
            case (nil, nil): break
            }
        }
    }

    /// Looks up a member from `position` to the end and then from the start, and moves `position` past the
    /// member found. A reader that asks for members in about the order they were written finds each at the
    /// first try, where the subscript compares every key before it.
    public func value(forKey key: String, searchingFrom position: inout Int) -> JSONValue? {
        let count = self.members.count
        guard count > 0 else { return nil }
        var index = min(max(position, 0), count) % count
        for _ in 0..<count {
            if Self.sameKey(self.members[index].key, key) {
                position = index + 1
                return self.members[index].value
            }
            index = index + 1 == count ? 0 : index + 1
        }
        return nil
    }

    /// Compares keys by their UTF-8 bytes, as the parser does when it rejects duplicates. String equality would
    /// match canonically equivalent spellings ("K" and the Kelvin sign U+212A), so a lookup could find a member
    /// the duplicate check let through under another spelling.
    static func sameKey(_ lhs: String, _ rhs: String) -> Bool {
        let left = lhs.utf8
        let right = rhs.utf8
        guard left.count == right.count else { return false }
        // memcmp, because the generic `elementsEqual` over two buffers compiled to a byte-by-byte loop. Under
        // callgrind, key comparison with it took 7 percent of the instructions of an accepted event.
        let compared = left.withContiguousStorageIfAvailable { leftBytes in
            right.withContiguousStorageIfAvailable { rightBytes in
                leftBytes.isEmpty || memcmp(leftBytes.baseAddress!, rightBytes.baseAddress!, leftBytes.count) == 0
            }
        }
        if let compared, let result = compared {
            return result
        }
        return left.elementsEqual(right)
    }

    public var keys: [String] {
        self.members.map(\.key)
    }

    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.members.count == rhs.members.count else { return false }
        for (left, right) in zip(lhs.members, rhs.members) where left.key != right.key || left.value != right.value {
            return false
        }
        return true
    }
}
