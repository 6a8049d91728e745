/// Builds compact JSON text into a byte buffer.
///
/// The writer is for the relay's own responses and logs; it escapes every string it is given, so callers never
/// place raw input in the output.
public struct JSONWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 256) {
        self.bytes.reserveCapacity(capacity)
    }

    public mutating func write(_ value: JSONValue) {
        switch value {
        case .null: self.appendRaw("null")
        case .bool(let flag): self.appendRaw(flag ? "true" : "false")
        case .number(let number): self.writeNumber(number)
        case .string(let string): self.writeString(string)
        case .array(let elements):
            self.bytes.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { self.bytes.append(UInt8(ascii: ",")) }
                self.write(element)
            }
            self.bytes.append(UInt8(ascii: "]"))
        case .object(let object):
            self.bytes.append(UInt8(ascii: "{"))
            for (index, member) in object.members.enumerated() {
                if index > 0 { self.bytes.append(UInt8(ascii: ",")) }
                self.writeString(member.key)
                self.bytes.append(UInt8(ascii: ":"))
                self.write(member.value)
            }
            self.bytes.append(UInt8(ascii: "}"))
        }
    }

    public mutating func writeNumber(_ number: Double) {
        if let integer = Int(exactly: number) {
            self.appendRaw(String(integer))
        } else if number.isFinite {
            self.appendRaw(String(number))
        } else {
            self.appendRaw("null")
        }
    }

    public mutating func writeString(_ string: String) {
        self.bytes.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): self.appendRaw("\\\"")
            case UInt8(ascii: "\\"): self.appendRaw("\\\\")
            case 0x0A: self.appendRaw("\\n")
            case 0x0D: self.appendRaw("\\r")
            case 0x09: self.appendRaw("\\t")
            case 0..<0x20, 0x7F:
                self.appendRaw("\\u00")
                self.bytes.append(Self.hexDigit(byte >> 4))
                self.bytes.append(Self.hexDigit(byte & 0x0F))
            default: self.bytes.append(byte)
            }
        }
        self.bytes.append(UInt8(ascii: "\""))
    }

    /// Appends bytes that are already JSON.
    public mutating func appendRaw(_ bytes: [UInt8]) {
        self.bytes.append(contentsOf: bytes)
    }

    public mutating func appendRaw(_ text: String) {
        self.bytes.append(contentsOf: text.utf8)
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }

    /// Encodes one value as compact JSON text.
    public static func encode(_ value: JSONValue) -> [UInt8] {
        var writer = JSONWriter()
        writer.write(value)
        return writer.bytes
    }

    public static func encodeString(_ value: JSONValue) -> String {
        String(decoding: self.encode(value), as: UTF8.self)
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByNilLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(JSONObject(elements.map { (key: $0.0, value: $0.1) }))
    }
}
