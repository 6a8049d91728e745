/// An `LRUIndex` split by key hash into `HashShards.count` indexes, each with an equal share of the capacity, so
/// that no single table grows all at once (see `HashShards`).
///
/// A full shard evicts its own least recently used entry, which is the oldest of that shard rather than of the
/// whole index. With keys spread evenly, it is among the oldest sixty-fourth of all entries. Below
/// `minimumShardedCapacity` the index keeps one shard and exact order, since small tables grow quickly anyway.
public struct ShardedLRUIndex<Key: ShardableKey, Value> {
    public static var minimumShardedCapacity: Int { 65_536 }

    /// The maximum number of entries, rounded up to a multiple of the shard count.
    public let capacity: Int
    @usableFromInline var shards: [LRUIndex<Key, Value>]

    public init(capacity: Int) {
        let shardCount = capacity >= Self.minimumShardedCapacity ? HashShards.count : 1
        let shardCapacity = (capacity + shardCount - 1) / shardCount
        self.capacity = shardCapacity * shardCount
        self.shards = Array(repeating: LRUIndex(capacity: shardCapacity), count: shardCount)
    }

    public var count: Int {
        self.shards.reduce(0) { $0 + $1.count }
    }

    @inlinable func shard(of key: Key) -> Int {
        self.shards.count == 1 ? 0 : HashShards.index(of: key)
    }

    /// Returns the value for the key and marks the entry most recently used.
    @inlinable public mutating func lookup(_ key: Key) -> Value? {
        self.shards[self.shard(of: key)].lookup(key)
    }

    /// Returns the value without changing the recency order.
    @inlinable public func peek(_ key: Key) -> Value? {
        self.shards[self.shard(of: key)].peek(key)
    }

    /// Inserts or replaces the value, marks it most recently used, and returns the entry its shard evicted to
    /// make room.
    @inlinable @discardableResult
    public mutating func insert(_ key: Key, _ value: Value) -> (key: Key, value: Value)? {
        self.shards[self.shard(of: key)].insert(key, value)
    }

    /// Inserts the value if the key is absent, or replaces the entry's value if `replaces` returns true for it,
    /// as `LRUIndex.insert(_:_:replacingIf:)` describes.
    @inlinable @discardableResult
    public mutating func insert(
        _ key: Key, _ value: Value, replacingIf replaces: (Value) -> Bool
    ) -> (key: Key, value: Value)? {
        self.shards[self.shard(of: key)].insert(key, value, replacingIf: replaces)
    }

    /// Replaces the value of an existing entry without changing the recency order; returns false if absent.
    @inlinable @discardableResult
    public mutating func update(_ key: Key, _ value: Value) -> Bool {
        self.shards[self.shard(of: key)].update(key, value)
    }

    @inlinable @discardableResult
    public mutating func remove(_ key: Key) -> Value? {
        self.shards[self.shard(of: key)].remove(key)
    }

    /// Reserves room for `count` entries up front, spread over the shards.
    public mutating func reserveCapacity(_ count: Int) {
        let perShard = (min(count, self.capacity) + self.shards.count - 1) / self.shards.count
        for index in self.shards.indices {
            self.shards[index].reserveCapacity(perShard)
        }
    }
}

extension ShardedLRUIndex: Sendable where Key: Sendable, Value: Sendable {}
