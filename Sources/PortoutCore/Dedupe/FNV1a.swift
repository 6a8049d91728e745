/// FNV-1a over a string's UTF-8 bytes, a cheap hash that gives the same value in every process, where `Hasher` is
/// seeded per process. Strings that are equal but differ in their bytes, such as "caf\u{E9}" and "cafe\u{301}",
/// hash differently, and keys chosen by a client can crowd it.
public enum FNV1a {
    /// Hashes over the bytes in a buffer, because iterating `utf8` itself cost about 30 instructions a byte.
    @inlinable public static func hash32(_ text: String) -> UInt32 {
        var text = text
        return text.withUTF8 { bytes in
            var hash: UInt32 = 2_166_136_261
            for byte in bytes {
                hash = (hash ^ UInt32(byte)) &* 16_777_619
            }
            return hash
        }
    }
}
