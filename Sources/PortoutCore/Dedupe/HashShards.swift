/// Picks one of a power-of-two number of shards for a key, for hash tables that must not grow all at once.
///
/// Swift's `Dictionary` and `Array` grow by copying everything into storage twice the size. With a few hundred
/// thousand port outs one such step took 80 to 150 ms, measured on the ingest path under load, and every
/// request waiting on that table waited that long. Split 64 ways, each step moves a sixty-fourth as much.
///
/// The shard comes from the top bits of `shardBits` because `Dictionary` picks buckets with the bottom bits of
/// its own hash: keys sharing bottom bits would crowd into a sixty-fourth of each shard's buckets.
public enum HashShards {
    public static let count = 64

    @inlinable
    public static func index<Key: ShardableKey>(of key: Key) -> Int {
        Int(truncatingIfNeeded: key.shardBits >> (UInt.bitWidth - 6))
    }
}

/// A key of a sharded table. Any key can pick its shard from `hashValue`. A key whose bits are already spread
/// evenly, such as a digest, can pick it from those bits and so save a second hashing on every lookup.
public protocol ShardableKey: Hashable {
    /// Bits spread evenly over the keys, the same for any two keys that are equal. The shard comes from the top
    /// six.
    var shardBits: UInt { get }
}

extension ShardableKey {
    @inlinable public var shardBits: UInt {
        UInt(bitPattern: self.hashValue)
    }
}

/// Strings keep `hashValue`, because equal strings may differ in their bytes: "caf\u{E9}" equals "cafe\u{301}",
/// and "\u{212A}" (the Kelvin sign) equals "K". A hash of the bytes would put such a pair in two shards.
extension String: ShardableKey {}

extension Int: ShardableKey {}

/// A dictionary split into `HashShards.count` dictionaries by key hash; see `HashShards` for why. Iteration
/// order is unspecified, as for `Dictionary`.
public struct ShardedDictionary<Key: ShardableKey, Value> {
    @usableFromInline var shards: [[Key: Value]]

    public init() {
        self.shards = Array(repeating: [:], count: HashShards.count)
    }

    public var count: Int {
        self.shards.reduce(0) { $0 + $1.count }
    }

    public var isEmpty: Bool {
        self.shards.allSatisfy(\.isEmpty)
    }

    @inlinable
    public subscript(key: Key) -> Value? {
        get { self.shards[HashShards.index(of: key)][key] }
        set { self.shards[HashShards.index(of: key)][key] = newValue }
    }

    /// Gives `body` the key's value slot in place, so that a read followed by a write costs one hash lookup.
    @inlinable
    public mutating func withValue<Result>(forKey key: Key, _ body: (inout Value?) -> Result) -> Result {
        body(&self.shards[HashShards.index(of: key)][key])
    }

    @inlinable @discardableResult
    public mutating func removeValue(forKey key: Key) -> Value? {
        self.shards[HashShards.index(of: key)].removeValue(forKey: key)
    }

    /// Every key and value, shard by shard.
    public var elements: FlattenSequence<[[Key: Value]]> {
        self.shards.joined()
    }
}

extension ShardedDictionary: Sendable where Key: Sendable, Value: Sendable {}
