/// A JSON syntax error with the byte offset where parsing stopped.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let offset: Int
    public let reason: String

    public var description: String {
        "invalid JSON at byte \(self.offset): \(self.reason)"
    }
}

/// A strict RFC 8259 parser over raw bytes.
///
/// Beyond the RFC it rejects duplicate object keys and nesting deeper than `maxDepth`, so that a signed body
/// cannot mean one thing here and another to a downstream parser, and no input can exhaust the stack.
public struct JSONParser {
    public static let defaultMaxDepth = 64

    /// Parses one JSON value that must span the whole input, apart from surrounding white space.
    public static func parse(_ bytes: [UInt8], maxDepth: Int = defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        try bytes.withUnsafeBufferPointer { (buffer) throws(JSONParseError) -> JSONValue in
            var parser = Cursor(bytes: buffer, maxDepth: maxDepth)
            return try parser.parseDocument()
        }
    }

    public static func parse(_ text: String, maxDepth: Int = defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        try self.parse(Array(text.utf8), maxDepth: maxDepth)
    }
}

private struct Cursor {
    let bytes: UnsafeBufferPointer<UInt8>
    let maxDepth: Int
    var index = 0
    var depth = 0

    init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        self.skipWhitespace()
        let value = try self.parseValue()
        self.skipWhitespace()
        if self.index != self.bytes.count {
            throw self.error("unexpected data after the top-level value")
        }
        return value
    }

    func error(_ reason: String) -> JSONParseError {
        JSONParseError(offset: self.index, reason: reason)
    }

    mutating func skipWhitespace() {
        while self.index < self.bytes.count {
            switch self.bytes[self.index] {
            case 0x20, 0x09, 0x0A, 0x0D: self.index += 1
            default: return
            }
        }
    }

    mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard self.index < self.bytes.count else { throw self.error("unexpected end of input") }
        switch self.bytes[self.index] {
        case UInt8(ascii: "{"): return try self.parseObject()
        case UInt8(ascii: "["): return try self.parseArray()
        case UInt8(ascii: "\""): return .string(try self.parseString())
        case UInt8(ascii: "t"): return try self.parseLiteral("true", .bool(true))
        case UInt8(ascii: "f"): return try self.parseLiteral("false", .bool(false))
        case UInt8(ascii: "n"): return try self.parseLiteral("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try self.parseNumber()
        default: throw self.error("unexpected character")
        }
    }

    mutating func parseLiteral(_ literal: StaticString, _ value: JSONValue) throws(JSONParseError) -> JSONValue {
        let count = literal.utf8CodeUnitCount
        guard self.index + count <= self.bytes.count else { throw self.error("unexpected end of input") }
        let expected = UnsafeBufferPointer(start: literal.utf8Start, count: count)
        for offset in 0..<count where self.bytes[self.index + offset] != expected[offset] {
            throw self.error("invalid literal")
        }
        self.index += count
        return value
    }

    mutating func enterContainer() throws(JSONParseError) {
        self.depth += 1
        if self.depth > self.maxDepth {
            throw self.error("nesting deeper than \(self.maxDepth) levels")
        }
    }

    mutating func parseObject() throws(JSONParseError) -> JSONValue {
        try self.enterContainer()
        self.index += 1
        var members: [(key: String, value: JSONValue)] = []
        // Keys are compared by their UTF-8 bytes, since String equality would take canonically equivalent
        // spellings ("café" and "cafe\u{301}") for one key. Small objects, nearly all of them, are searched
        // in place. Past `linearKeyLimit` members the keys go into a set, so that an object with tens of
        // thousands of members is not checked in quadratic time.
        var keys = Set<[UInt8]>()
        // A fingerprint of each of the first `linearKeyLimit` keys, so that the search in place compares
        // integers and compares bytes only when two fingerprints are equal.
        var fingerprints = KeyFingerprints(repeating: 0)
        // The carrier's objects have ten or so members, so one allocation usually fits them all.
        members.reserveCapacity(Self.linearKeyLimit)
        self.skipWhitespace()
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "}") {
            self.index += 1
            self.depth -= 1
            return .object(JSONObject(members))
        }
        while true {
            self.skipWhitespace()
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\"") else {
                throw self.error("expected a string key")
            }
            let keyOffset = self.index
            let key = try self.parseString()
            let fingerprint = Self.fingerprint(of: key)
            if Self.isDuplicate(key, fingerprint: fingerprint, in: members, fingerprints: fingerprints, set: &keys) {
                throw JSONParseError(offset: keyOffset, reason: "duplicate key \"\(key)\"")
            }
            if members.count < Self.linearKeyLimit {
                fingerprints[members.count] = fingerprint
            }
            self.skipWhitespace()
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ":") else {
                throw self.error("expected ':' after an object key")
            }
            self.index += 1
            self.skipWhitespace()
            members.append((key, try self.parseValue()))
            self.skipWhitespace()
            guard self.index < self.bytes.count else { throw self.error("unexpected end of input") }
            switch self.bytes[self.index] {
            case UInt8(ascii: ","):
                self.index += 1
            case UInt8(ascii: "}"):
                self.index += 1
                self.depth -= 1
                return .object(JSONObject(members))
            default:
                throw self.error("expected ',' or '}' in an object")
            }
        }
    }

    typealias KeyFingerprints = InlineArray<16, UInt64>
    static let linearKeyLimit = KeyFingerprints.count

    /// Returns the FNV-1a hash of a key's bytes as decoded, so that escaped and plain spellings of one key get
    /// the same fingerprint.
    static func fingerprint(of key: String) -> UInt64 {
        FNV1a.hash64(key)
    }

    /// Returns whether `key` is already among `members`. While the object has fewer than `linearKeyLimit`
    /// members, `fingerprints` contains theirs in order. Once it outgrows that, `set` contains every key so far.
    static func isDuplicate(
        _ key: String, fingerprint: UInt64, in members: [(key: String, value: JSONValue)],
        fingerprints: KeyFingerprints, set: inout Set<[UInt8]>
    ) -> Bool {
        if members.count < self.linearKeyLimit {
            for index in 0..<members.count
            where fingerprints[index] == fingerprint && JSONObject.sameKey(members[index].key, key) {
                return true
            }
            return false
        }
        if set.isEmpty {
            for member in members {
                set.insert(Array(member.key.utf8))
            }
        }
        return !set.insert(Array(key.utf8)).inserted
    }

    mutating func parseArray() throws(JSONParseError) -> JSONValue {
        try self.enterContainer()
        self.index += 1
        var elements: [JSONValue] = []
        self.skipWhitespace()
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "]") {
            self.index += 1
            self.depth -= 1
            return .array(elements)
        }
        while true {
            self.skipWhitespace()
            elements.append(try self.parseValue())
            self.skipWhitespace()
            guard self.index < self.bytes.count else { throw self.error("unexpected end of input") }
            switch self.bytes[self.index] {
            case UInt8(ascii: ","):
                self.index += 1
            case UInt8(ascii: "]"):
                self.index += 1
                self.depth -= 1
                return .array(elements)
            default:
                throw self.error("expected ',' or ']' in an array")
            }
        }
    }

    mutating func parseString() throws(JSONParseError) -> String {
        self.index += 1
        let start = self.index
        // Fast path: most strings have no escapes, so they are validated and copied in one step. An ASCII string
        // is already valid UTF-8, so `String(decoding:)` copies it without the generic validating initialiser's
        // cost.
        var highBits: UInt8 = 0
        while self.index < self.bytes.count {
            let byte = self.bytes[self.index]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: self.bytes[start..<self.index])
                self.index += 1
                if highBits & 0x80 == 0 {
                    return String(decoding: slice, as: UTF8.self)
                }
                guard let string = String(validating: slice, as: UTF8.self) else {
                    throw JSONParseError(offset: start, reason: "string is not valid UTF-8")
                }
                return string
            }
            highBits |= byte
            if byte == UInt8(ascii: "\\") {
                return try self.parseEscapedString(from: start)
            }
            if byte < 0x20 {
                throw self.error("control character in a string")
            }
            self.index += 1
        }
        throw self.error("unterminated string")
    }

    mutating func parseEscapedString(from start: Int) throws(JSONParseError) -> String {
        var scalars: [UInt8] = Array(self.bytes[start..<self.index])
        while self.index < self.bytes.count {
            let byte = self.bytes[self.index]
            switch byte {
            case UInt8(ascii: "\""):
                self.index += 1
                guard let string = String(validating: scalars, as: UTF8.self) else {
                    throw JSONParseError(offset: start, reason: "string is not valid UTF-8")
                }
                return string
            case UInt8(ascii: "\\"):
                self.index += 1
                try self.appendEscape(to: &scalars)
            case 0..<0x20:
                throw self.error("control character in a string")
            default:
                scalars.append(byte)
                self.index += 1
            }
        }
        throw self.error("unterminated string")
    }

    mutating func appendEscape(to output: inout [UInt8]) throws(JSONParseError) {
        guard self.index < self.bytes.count else { throw self.error("unterminated escape") }
        let byte = self.bytes[self.index]
        self.index += 1
        switch byte {
        case UInt8(ascii: "\""): output.append(0x22)
        case UInt8(ascii: "\\"): output.append(0x5C)
        case UInt8(ascii: "/"): output.append(0x2F)
        case UInt8(ascii: "b"): output.append(0x08)
        case UInt8(ascii: "f"): output.append(0x0C)
        case UInt8(ascii: "n"): output.append(0x0A)
        case UInt8(ascii: "r"): output.append(0x0D)
        case UInt8(ascii: "t"): output.append(0x09)
        case UInt8(ascii: "u"):
            let scalar = try self.parseUnicodeEscape()
            output.append(contentsOf: Array(String(Character(scalar)).utf8))
        default:
            throw JSONParseError(offset: self.index - 1, reason: "invalid escape")
        }
    }

    mutating func parseUnicodeEscape() throws(JSONParseError) -> Unicode.Scalar {
        let first = try self.parseHex4()
        if (0xD800...0xDBFF).contains(first) {
            // A high surrogate must be followed by an escaped low surrogate.
            guard self.index + 1 < self.bytes.count,
                self.bytes[self.index] == UInt8(ascii: "\\"),
                self.bytes[self.index + 1] == UInt8(ascii: "u")
            else {
                throw self.error("unpaired surrogate in a \\u escape")
            }
            self.index += 2
            let second = try self.parseHex4()
            guard (0xDC00...0xDFFF).contains(second) else {
                throw self.error("unpaired surrogate in a \\u escape")
            }
            let combined = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            return Unicode.Scalar(combined)!
        }
        guard let scalar = Unicode.Scalar(first) else {
            throw self.error("unpaired surrogate in a \\u escape")
        }
        return scalar
    }

    mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard self.index + 4 <= self.bytes.count else { throw self.error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = self.bytes[self.index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw self.error("invalid hex digit in a \\u escape")
            }
            value = value << 4 | UInt32(digit)
            self.index += 1
        }
        return value
    }

    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = self.index
        if self.bytes[self.index] == UInt8(ascii: "-") { self.index += 1 }
        guard self.index < self.bytes.count else { throw self.error("truncated number") }
        if self.bytes[self.index] == UInt8(ascii: "0") {
            self.index += 1
        } else if self.isDigit(at: self.index) {
            while self.isDigit(at: self.index) { self.index += 1 }
        } else {
            throw self.error("invalid number")
        }
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ".") {
            self.index += 1
            guard self.isDigit(at: self.index) else { throw self.error("expected a digit after '.'") }
            while self.isDigit(at: self.index) { self.index += 1 }
        }
        if self.index < self.bytes.count, self.bytes[self.index] | 0x20 == UInt8(ascii: "e") {
            self.index += 1
            if self.index < self.bytes.count,
                self.bytes[self.index] == UInt8(ascii: "+") || self.bytes[self.index] == UInt8(ascii: "-")
            {
                self.index += 1
            }
            guard self.isDigit(at: self.index) else { throw self.error("expected a digit in the exponent") }
            while self.isDigit(at: self.index) { self.index += 1 }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: self.bytes[start..<self.index]), as: UTF8.self)
        guard let value = Double(text), value.isFinite else {
            throw JSONParseError(offset: start, reason: "number out of range")
        }
        return .number(value)
    }

    func isDigit(at position: Int) -> Bool {
        position < self.bytes.count && (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self.bytes[position])
    }
}
