/// FNV-1a hashes of a string's UTF-8 bytes. Unlike Swift's `Hasher`, they are the same in every process, and
/// they are cheap for the short keys and names they are used on.
public enum FNV1a {
    @inlinable
    public static func hash32(_ text: String) -> UInt32 {
        self.hash(text, offsetBasis: 0x811C_9DC5, prime: 0x0100_0193)
    }

    @inlinable
    public static func hash64(_ text: String) -> UInt64 {
        self.hash(text, offsetBasis: 0xCBF2_9CE4_8422_2325, prime: 0x0000_0100_0000_01B3)
    }

    /// Hashes over the string's contiguous bytes, because iterating `utf8` itself cost about 30 instructions a
    /// byte under callgrind.
    @inlinable
    static func hash<Value: FixedWidthInteger & UnsignedInteger>(
        _ text: String, offsetBasis: Value, prime: Value
    ) -> Value {
        var text = text
        return text.withUTF8 { bytes in
            var hash = offsetBasis
            for byte in bytes {
                hash = (hash ^ Value(byte)) &* prime
            }
            return hash
        }
    }
}
