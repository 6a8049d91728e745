/// Hex and base64 text for MACs and keys.
public enum ByteEncoding {
    private static let hexDigits = Array("0123456789abcdef".utf8)

    public static func hex(_ bytes: [UInt8]) -> String {
        var output = [UInt8]()
        output.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            output.append(self.hexDigits[Int(byte >> 4)])
            output.append(self.hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Decodes hex in either case; returns nil for an odd length or a non-hex character.
    public static func decodeHex(_ text: Substring) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var output = [UInt8]()
        output.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = self.nibble(utf8[index]), let low = self.nibble(utf8[index + 1]) else { return nil }
            output.append(high << 4 | low)
            index += 2
        }
        return output
    }

    /// Returns the value of one hexadecimal digit, either case, or nil for any other byte.
    public static func nibble(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    private static let base64Digits = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// The value of each byte as a base64 digit, or 0xFF for a byte outside the alphabet.
    private static let base64Values: [UInt8] = {
        var values = [UInt8](repeating: 0xFF, count: 256)
        for (value, digit) in base64Digits.enumerated() {
            values[Int(digit)] = UInt8(value)
        }
        return values
    }()

    /// Standard base64 (RFC 4648 section 4) with padding.
    public static func base64(_ bytes: [UInt8]) -> String {
        var output = [UInt8]()
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let group = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            for shift in [18, 12, 6, 0] {
                output.append(self.base64Digits[Int(group >> UInt32(shift) & 0x3F)])
            }
            index += 3
        }
        let rest = bytes.count - index
        if rest > 0 {
            let group = UInt32(bytes[index]) << 16 | (rest == 2 ? UInt32(bytes[index + 1]) << 8 : 0)
            output.append(self.base64Digits[Int(group >> 18 & 0x3F)])
            output.append(self.base64Digits[Int(group >> 12 & 0x3F)])
            output.append(rest == 2 ? self.base64Digits[Int(group >> 6 & 0x3F)] : UInt8(ascii: "="))
            output.append(UInt8(ascii: "="))
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Decodes padded standard base64; returns nil for a length that is not a multiple of four, a byte outside
    /// the alphabet, or padding anywhere but at the end of the last group. Unused low bits of the last digit
    /// are ignored, as most decoders do.
    public static func decodeBase64(_ text: Substring) -> [UInt8]? {
        let utf8 = text.utf8
        let decoded = utf8.withContiguousStorageIfAvailable { self.decodeBase64(bytes: $0) }
        if let decoded {
            return decoded
        }
        return Array(utf8).withUnsafeBufferPointer { self.decodeBase64(bytes: $0) }
    }

    /// Decodes padded standard base64 text given as bytes, as `decodeBase64(_:)` does.
    public static func decodeBase64(bytes: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard bytes.count % 4 == 0 else { return nil }
        var padding = 0
        if bytes.count >= 4, bytes[bytes.count - 1] == UInt8(ascii: "=") {
            padding = bytes[bytes.count - 2] == UInt8(ascii: "=") ? 2 : 1
        }
        var output = [UInt8]()
        output.reserveCapacity(bytes.count / 4 * 3)
        var index = 0
        while index < bytes.count {
            let isLast = index + 4 == bytes.count
            let digits = isLast ? 4 - padding : 4
            var group: UInt32 = 0
            for offset in 0..<4 {
                var value: UInt8 = 0
                if offset < digits {
                    value = self.base64Values[Int(bytes[index + offset])]
                    guard value != 0xFF else { return nil }
                }
                group = group << 6 | UInt32(value)
            }
            output.append(UInt8(truncatingIfNeeded: group >> 16))
            if digits > 2 { output.append(UInt8(truncatingIfNeeded: group >> 8)) }
            if digits > 3 { output.append(UInt8(truncatingIfNeeded: group)) }
            index += 4
        }
        return output
    }
}
