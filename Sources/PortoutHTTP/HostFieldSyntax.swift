import PortoutCore

/// The syntax of a `Host` field value: `uri-host [ ":" port ]` (RFC 9110 section 7.2, RFC 3986 section 3.2.2).
///
/// RFC 9112 section 3.2 requires a 400 for a request whose Host value does not match it.
enum HostFieldSyntax {
    /// Returns whether `value` is a reg-name, IPv4 address or bracketed IP literal, with an optional decimal port.
    ///
    /// An empty value is valid: a client sends one when the target URI has no authority. An IP literal is checked
    /// only for its characters, not for a well-formed IPv6 address.
    static func isValid(_ value: String) -> Bool {
        var rest = Array(value.utf8)[...]
        if rest.first == UInt8(ascii: "[") {
            guard let close = rest.firstIndex(of: UInt8(ascii: "]")) else { return false }
            let literal = rest[(rest.startIndex + 1)..<close]
            guard !literal.isEmpty, literal.allSatisfy(Self.isIPLiteralByte) else { return false }
            rest = rest[(close + 1)...]
        } else {
            let nameEnd = rest.firstIndex(of: UInt8(ascii: ":")) ?? rest.endIndex
            guard Self.isRegName(rest[..<nameEnd]) else { return false }
            rest = rest[nameEnd...]
        }
        guard let separator = rest.first else { return true }
        guard separator == UInt8(ascii: ":") else { return false }
        return rest.dropFirst().allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// Returns whether the bytes match `*( unreserved / pct-encoded / sub-delims )`, which covers IPv4 too.
    private static func isRegName(_ bytes: ArraySlice<UInt8>) -> Bool {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < bytes.endIndex, ASCII.hexDigitValue(bytes[index + 1]) != nil,
                    ASCII.hexDigitValue(bytes[index + 2]) != nil
                else { return false }
                index += 3
                continue
            }
            guard Self.isUnreserved(byte) || Self.isSubDelimiter(byte) else { return false }
            index += 1
        }
        return true
    }

    /// Returns whether the byte may occur in an IPv6 or IPvFuture literal: unreserved, sub-delims or `:`.
    private static func isIPLiteralByte(_ byte: UInt8) -> Bool {
        Self.isUnreserved(byte) || Self.isSubDelimiter(byte) || byte == UInt8(ascii: ":")
    }

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    private static func isSubDelimiter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("),
            UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"),
            UInt8(ascii: "="):
            return true
        default:
            return false
        }
    }
}
