import Testing

@testable import PortoutCore

struct ShardedTableTests {
    @Test func shardIndexSpreadsKeysEvenly() {
        var counts = Array(repeating: 0, count: HashShards.count)
        for key in 0..<64_000 {
            counts[HashShards.index(of: key)] += 1
        }
        // An even spread puts 1,000 keys in each shard; too few bits of the hash would leave shards empty.
        #expect(counts.min()! > 700)
        #expect(counts.max()! < 1_300)
    }

    /// Port-out ids that differ only in their last characters must spread over the shards.
    @Test func stringKeysSpreadEvenly() {
        var counts = Array(repeating: 0, count: HashShards.count)
        for number in 0..<64_000 {
            counts[HashShards.index(of: "pout_\(number)")] += 1
        }
        #expect(counts.min()! > 700)
        #expect(counts.max()! < 1_300)
    }

    /// Strings that are equal in Swift but differ in their bytes must share a shard, or a sharded dictionary
    /// would keep both.
    @Test func equalStringsShareAShard() {
        let pairs = [
            ("pout_caf\u{E9}", "pout_cafe\u{301}"),
            ("pout_K", "pout_\u{212A}"),
            ("pout_\u{C5}", "pout_\u{212B}"),
        ]
        for (composed, other) in pairs {
            #expect(composed == other)
            #expect(HashShards.index(of: composed) == HashShards.index(of: other))
        }
    }

    @Test func smallIndexKeepsExactOrder() {
        var index = ShardedLRUIndex<Int, String>(capacity: 2)
        #expect(index.capacity == 2)
        index.insert(1, "a")
        index.insert(2, "b")
        let found = index.lookup(1)
        #expect(found == "a")
        let evicted = index.insert(3, "c")
        #expect(evicted?.key == 2)
        #expect(index.peek(1) == "a")
        #expect(index.count == 2)
    }

    @Test func largeIndexForgetsOldestEntries() {
        let capacity = ShardedLRUIndex<Int, Int>.minimumShardedCapacity
        var index = ShardedLRUIndex<Int, Int>(capacity: capacity)
        #expect(index.capacity == capacity)
        // Filling each shard to the brim needs more keys than the capacity, since keys do not spread exactly.
        var forgotten: [Int] = []
        for key in 0..<(2 * capacity) {
            if let evicted = index.insert(key, key) {
                forgotten.append(evicted.key)
            }
        }
        #expect(index.count <= capacity)
        #expect(index.count > capacity - HashShards.count * 64)
        #expect(forgotten.count == 2 * capacity - index.count)
        // Every key forgotten was inserted before every key kept in its shard, so the newest keys are all kept
        // and the oldest are all gone.
        #expect((2 * capacity - 1_000..<2 * capacity).allSatisfy { index.peek($0) == $0 })
        #expect((0..<1_000).allSatisfy { index.peek($0) == nil })
        let removed = index.remove(2 * capacity - 1)
        #expect(removed == 2 * capacity - 1)
        let updated = index.update(2 * capacity - 2, -1)
        #expect(updated)
        #expect(index.peek(2 * capacity - 2) == -1)
        let updatedRemoved = index.update(2 * capacity - 1, 0)
        #expect(!updatedRemoved)
    }

    @Test func capacityRoundsUpToShards() {
        let index = ShardedLRUIndex<Int, Int>(capacity: 100_001)
        #expect(index.capacity == 100_032)
    }

    @Test func dictionaryReadsWritesIterates() {
        var dictionary = ShardedDictionary<String, Int>()
        #expect(dictionary.isEmpty)
        for number in 0..<1_000 {
            dictionary["key\(number)"] = number
        }
        #expect(dictionary.count == 1_000)
        #expect(dictionary["key7"] == 7)
        let previous = dictionary.withValue(forKey: "key7") { slot -> Int? in
            defer { slot = 70 }
            return slot
        }
        #expect(previous == 7)
        #expect(dictionary["key7"] == 70)
        dictionary.withValue(forKey: "new") { slot in slot = 1 }
        let removed = dictionary.removeValue(forKey: "key8")
        #expect(removed == 8)
        #expect(dictionary["key8"] == nil)
        let keys = Set(dictionary.elements.map(\.key))
        #expect(keys.count == 1_000)
        #expect(keys.contains("new"))
        #expect(!keys.contains("key8"))
    }
}

struct LRUIndexTests {
    @Test func evictsLeastRecentlyUsed() {
        var index = LRUIndex<Int, String>(capacity: 2)
        #expect(index.insert(1, "a") == nil)
        #expect(index.insert(2, "b") == nil)
        #expect(index.lookup(1) == "a")
        let evicted = index.insert(3, "c")
        #expect(evicted?.key == 2)
        #expect(index.peek(2) == nil)
        #expect(index.count == 2)
        #expect(index.remove(1) == "a")
        #expect(index.count == 1)
    }

    @Test func conditionalInsertKeepsOrReplaces() {
        var index = LRUIndex<Int, Int>(capacity: 3)
        index.insert(1, 10)
        index.insert(2, 20)
        // Kept: the value stays and so does the entry's place, so 1 is still the oldest.
        index.insert(1, 5) { $0 < 5 }
        #expect(index.peek(1) == 10)
        index.insert(3, 30)
        #expect(index.insert(4, 40)?.key == 1)
        // Replaced: the entry becomes the most recent, so 3 is now the oldest.
        index.insert(2, 25) { $0 < 25 }
        #expect(index.peek(2) == 25)
        #expect(index.insert(5, 50)?.key == 3)
        // An absent key is inserted even when the condition is false.
        index.remove(4)
        #expect(index.insert(6, 60) { _ in false } == nil)
        #expect(index.peek(6) == 60)
        #expect(index.count == 3)
    }

    @Test func fullIndexReusesEvictedAndRemovedNodes() {
        var index = LRUIndex<Int, Int>(capacity: 2)
        for key in 0..<100 {
            // Every tenth key finds the room that removing the key before it left.
            let expected = key >= 2 && key % 10 != 0 ? key - 2 : nil
            #expect(index.insert(key, key * 2)?.key == expected)
            if key % 10 == 9 {
                #expect(index.remove(key - 1) == (key - 1) * 2)
            }
        }
        #expect(index.count == 1)
        // Two nodes served all hundred keys.
        #expect(index.keys.count == 2)
        #expect(index.insert(99, 0) { _ in false } == nil)
        #expect(index.peek(99) == 198)
        #expect(index.insert(100, 200) == nil)
        #expect(index.insert(101, 202)?.key == 99)
        #expect(index.insert(100, 0) { _ in false } == nil)
        #expect(index.insert(102, 204)?.key == 100)
    }
}
