/// Byte helpers for protocol text, which is ASCII wherever case matters.
public enum ASCII {
    /// Returns the byte with A to Z mapped to a to z and every other byte unchanged.
    @inlinable
    public static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }
}
