/// Byte helpers for protocol text, which is ASCII wherever case matters.
public enum ASCII {
    /// Returns the byte with A to Z mapped to a to z and every other byte unchanged.
    @inlinable
    public static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }

    /// Compares two byte buffers, treating A to Z and a to z as equal.
    @inlinable
    public static func equalsIgnoringCase(_ lhs: UnsafeBufferPointer<UInt8>, _ rhs: UnsafeBufferPointer<UInt8>) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for index in 0..<lhs.count where self.lowercased(lhs[index]) != self.lowercased(rhs[index]) {
            return false
        }
        return true
    }
}
