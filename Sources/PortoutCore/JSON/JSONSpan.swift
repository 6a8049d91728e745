/// Locates values inside JSON text without building a tree, so a stored event's `data` can be served as the
/// bytes it arrived as.
public enum JSONSpan {
    /// Returns the byte range of the value of the top-level member `key` of a JSON object, or nil if there is
    /// none. The text must already be valid JSON, as every journaled body is. A key spelled with escapes is not
    /// recognised, so callers fall back to a full parse on nil.
    public static func member(_ key: String, in bytes: [UInt8]) -> Range<Int>? {
        let expectedKey = Array(key.utf8)
        var scanner = Scanner(bytes: bytes)
        scanner.skipWhitespace()
        guard scanner.take(UInt8(ascii: "{")) else { return nil }
        while true {
            scanner.skipWhitespace()
            guard let keyRange = scanner.string() else { return nil }
            scanner.skipWhitespace()
            guard scanner.take(UInt8(ascii: ":")) else { return nil }
            scanner.skipWhitespace()
            let start = scanner.index
            guard scanner.skipValue() else { return nil }
            if bytes[keyRange].elementsEqual(expectedKey) {
                return start..<scanner.index
            }
            scanner.skipWhitespace()
            guard scanner.take(UInt8(ascii: ",")) else { return nil }
        }
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        mutating func skipWhitespace() {
            while self.index < self.bytes.count {
                switch self.bytes[self.index] {
                case 0x20, 0x09, 0x0A, 0x0D: self.index += 1
                default: return
                }
            }
        }

        mutating func take(_ byte: UInt8) -> Bool {
            guard self.index < self.bytes.count, self.bytes[self.index] == byte else { return false }
            self.index += 1
            return true
        }

        /// Skips a string and returns the range of its raw contents, between the quotes.
        mutating func string() -> Range<Int>? {
            guard self.take(UInt8(ascii: "\"")) else { return nil }
            let start = self.index
            while self.index < self.bytes.count {
                switch self.bytes[self.index] {
                case UInt8(ascii: "\\"):
                    self.index += 2
                case UInt8(ascii: "\""):
                    self.index += 1
                    return start..<(self.index - 1)
                default:
                    self.index += 1
                }
            }
            return nil
        }

        /// Skips one value of any kind, counting brackets and stepping over strings.
        mutating func skipValue() -> Bool {
            guard self.index < self.bytes.count else { return false }
            switch self.bytes[self.index] {
            case UInt8(ascii: "\""):
                return self.string() != nil
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                while self.index < self.bytes.count {
                    switch self.bytes[self.index] {
                    case UInt8(ascii: "\""):
                        guard self.string() != nil else { return false }
                        continue
                    case UInt8(ascii: "{"), UInt8(ascii: "["):
                        depth += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"):
                        depth -= 1
                        if depth == 0 {
                            self.index += 1
                            return true
                        }
                    default:
                        break
                    }
                    self.index += 1
                }
                return false
            default:
                // A number, true, false or null ends at the next delimiter.
                while self.index < self.bytes.count {
                    switch self.bytes[self.index] {
                    case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x09, 0x0A, 0x0D: return true
                    default: self.index += 1
                    }
                }
                return true
            }
        }
    }
}
