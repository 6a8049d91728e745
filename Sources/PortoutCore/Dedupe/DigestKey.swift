/// A 128-bit digest that stands in for a longer key (tenant, port-out id, status) in memory and in the journal.
///
/// At 16 bytes a key, a million of them fit in a few tens of MiB; with 128 bits, the chance that two of a
/// billion keys collide is below 10^-20.
public struct DigestKey: Hashable, Sendable, CustomStringConvertible {
    public let high: UInt64
    public let low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Builds a key from the first 16 bytes of a digest, read big-endian.
    public init(digestPrefix bytes: [UInt8]) {
        precondition(bytes.count >= 16, "a digest key needs 16 bytes")
        var high: UInt64 = 0
        var low: UInt64 = 0
        for index in 0..<8 {
            high = high << 8 | UInt64(bytes[index])
            low = low << 8 | UInt64(bytes[index + 8])
        }
        self.high = high
        self.low = low
    }

    /// Hashes the low word alone. Either word of a SHA-256 digest is spread evenly, and the high word already
    /// picks the shard.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.low)
    }

    public var description: String {
        let highText = String(self.high, radix: 16)
        let lowText = String(self.low, radix: 16)
        return String(repeating: "0", count: 16 - highText.count) + highText
            + String(repeating: "0", count: 16 - lowText.count) + lowText
    }
}

extension DigestKey: ShardableKey {
    public var shardBits: UInt {
        UInt(truncatingIfNeeded: self.high)
    }
}
