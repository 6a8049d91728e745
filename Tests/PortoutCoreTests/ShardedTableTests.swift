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
