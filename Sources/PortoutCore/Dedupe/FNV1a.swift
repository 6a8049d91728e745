/// FNV-1a over a string's UTF-8 bytes, a cheap hash that gives the same value in every process, where `Hasher` is
/// seeded per process. Not for tables that keys chosen by a client could crowd.
public enum FNV1a {
    @inlinable public static func hash32(_ text: String) -> UInt32 {
        self.hash(text, basis: 2_166_136_261, prime: 16_777_619)
    }

    @inlinable public static func hash64(_ text: String) -> UInt64 {
        self.hash(text, basis: 0xCBF2_9CE4_8422_2325, prime: 0x0000_0100_0000_01B3)
    }

    /// Hashes over the bytes in a buffer, because iterating `utf8` itself cost about 30 instructions a byte.
    @inlinable static func hash<Word: FixedWidthInteger & UnsignedInteger>(_ text: String, basis: Word, prime: Word) -> Word {
        var text = text
        return text.withUTF8 { bytes in
            var hash = basis
            for byte in bytes {
                hash = (hash ^ Word(byte)) &* prime
            }
            return hash
        }
    }
}
