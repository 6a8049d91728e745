/// A fixed-capacity map that forgets its least recently used entry when full.
///
/// Nodes live in parallel arrays linked by 32-bit indices, so each entry costs its key, its value and eight
/// bytes of links, plus the dictionary slot; there is no allocation per entry. Not thread-safe: the owner
/// serialises access.
///
/// Every member is inlinable so that callers in other modules get code specialised for their key and value
/// types; unspecialised generic code made journal replay several times slower.
public struct LRUIndex<Key: Hashable, Value> {
    public let capacity: Int
    @usableFromInline var slots: [Key: Int32] = [:]
    @usableFromInline var keys: [Key] = []
    @usableFromInline var values: [Value] = []
    @usableFromInline var previous: [Int32] = []
    @usableFromInline var next: [Int32] = []
    /// Most recently used node, or -1 when empty.
    @usableFromInline var head: Int32 = -1
    /// Least recently used node, or -1 when empty.
    @usableFromInline var tail: Int32 = -1
    @usableFromInline var freeNodes: [Int32] = []

    @inlinable public init(capacity: Int) {
        precondition(capacity > 0 && capacity < Int(Int32.max), "LRU capacity must be between 1 and Int32.max")
        self.capacity = capacity
    }

    @inlinable public var count: Int {
        self.slots.count
    }

    /// Returns the value for the key and marks the entry most recently used.
    @inlinable public mutating func lookup(_ key: Key) -> Value? {
        guard let node = self.slots[key] else { return nil }
        self.moveToFront(node)
        return self.values[Int(node)]
    }

    /// Returns the value without changing the recency order.
    @inlinable public func peek(_ key: Key) -> Value? {
        guard let node = self.slots[key] else { return nil }
        return self.values[Int(node)]
    }

    /// Inserts or replaces the value, marks it most recently used, and returns the entry evicted to make room.
    @inlinable @discardableResult
    public mutating func insert(_ key: Key, _ value: Value) -> (key: Key, value: Value)? {
        self.insert(key, value) { _ in true }
    }

    /// Inserts the value if the key is absent, or replaces the entry's value if `replaces` returns true for it.
    /// An inserted or replaced entry becomes the most recently used, and one left as it was keeps its place.
    /// Returns the entry evicted to make room.
    @inlinable @discardableResult
    public mutating func insert(
        _ key: Key, _ value: Value, replacingIf replaces: (Value) -> Bool
    ) -> (key: Key, value: Value)? {
        guard self.slots.count < self.capacity else {
            return self.insertEvicting(key, value, replacingIf: replaces)
        }
        // With room to spare, one hash lookup finds the key's slot, or fills it if the key is new. Replaying a
        // journal inserts every key, and start-up took about a tenth more CPU time with a second lookup each.
        let fresh = self.freeNodes.last ?? Int32(self.keys.count)
        if let node = Self.claim(&self.slots[key], for: fresh) {
            self.replace(node, with: value, if: replaces)
            return nil
        }
        self.store(key, value, at: fresh)
        return nil
    }

    /// Returns the node already in `slot`, or puts `fresh` there and returns nil.
    @inlinable static func claim(_ slot: inout Int32?, for fresh: Int32) -> Int32? {
        if let node = slot {
            return node
        }
        slot = fresh
        return nil
    }

    @inlinable mutating func insertEvicting(
        _ key: Key, _ value: Value, replacingIf replaces: (Value) -> Bool
    ) -> (key: Key, value: Value)? {
        if let node = self.slots[key] {
            self.replace(node, with: value, if: replaces)
            return nil
        }
        let victim = self.tail
        let evicted = (key: self.keys[Int(victim)], value: self.values[Int(victim)])
        self.unlink(victim)
        self.slots.removeValue(forKey: evicted.key)
        self.freeNodes.append(victim)
        self.slots[key] = victim
        self.store(key, value, at: victim)
        return evicted
    }

    /// Replaces the value in `node` and makes it the most recently used, if `replaces` returns true for the
    /// value there now.
    @inlinable mutating func replace(_ node: Int32, with value: Value, if replaces: (Value) -> Bool) {
        guard replaces(self.values[Int(node)]) else { return }
        self.values[Int(node)] = value
        self.moveToFront(node)
    }

    /// Puts a new entry in `node`, the last free node or the next new one, and links it at the front.
    @inlinable mutating func store(_ key: Key, _ value: Value, at node: Int32) {
        if self.freeNodes.last == node {
            self.freeNodes.removeLast()
            self.keys[Int(node)] = key
            self.values[Int(node)] = value
        } else {
            self.keys.append(key)
            self.values.append(value)
            self.previous.append(-1)
            self.next.append(-1)
        }
        self.linkAtFront(node)
    }

    /// Replaces the value of an existing entry without changing the recency order; returns false if absent.
    @inlinable @discardableResult
    public mutating func update(_ key: Key, _ value: Value) -> Bool {
        guard let node = self.slots[key] else { return false }
        self.values[Int(node)] = value
        return true
    }

    @inlinable @discardableResult
    public mutating func remove(_ key: Key) -> Value? {
        guard let node = self.slots.removeValue(forKey: key) else { return nil }
        self.unlink(node)
        self.freeNodes.append(node)
        return self.values[Int(node)]
    }

    /// Reserves room for `count` entries up front, to avoid rehashing while a journal is replayed.
    @inlinable public mutating func reserveCapacity(_ count: Int) {
        let target = min(count, self.capacity)
        self.slots.reserveCapacity(target)
        self.keys.reserveCapacity(target)
        self.values.reserveCapacity(target)
        self.previous.reserveCapacity(target)
        self.next.reserveCapacity(target)
    }

    @inlinable mutating func moveToFront(_ node: Int32) {
        guard node != self.head else { return }
        self.unlink(node)
        self.linkAtFront(node)
    }

    @inlinable mutating func unlink(_ node: Int32) {
        let before = self.previous[Int(node)]
        let after = self.next[Int(node)]
        if before >= 0 { self.next[Int(before)] = after } else { self.head = after }
        if after >= 0 { self.previous[Int(after)] = before } else { self.tail = before }
        self.previous[Int(node)] = -1
        self.next[Int(node)] = -1
    }

    @inlinable mutating func linkAtFront(_ node: Int32) {
        self.previous[Int(node)] = -1
        self.next[Int(node)] = self.head
        if self.head >= 0 { self.previous[Int(self.head)] = node }
        self.head = node
        if self.tail < 0 { self.tail = node }
    }
}
extension LRUIndex: Sendable where Key: Sendable, Value: Sendable {}
