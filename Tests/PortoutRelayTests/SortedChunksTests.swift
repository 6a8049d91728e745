import Testing

@testable import PortoutRelay

struct SortedChunksTests {
    /// Inserts in random order, with repeats, across enough elements to split chunks several times, and compares
    /// every position and every insertion index with a plain sorted array.
    @Test func matchesSortedArrayUnderRandomInserts() {
        var generator = EmulatorRandom(seed: 7)
        var chunks = SortedChunks<Int>()
        var reference: [Int] = []
        let total = 6 * SortedChunks<Int>.maxChunk
        for step in 1...total {
            let value = Int.random(in: 0..<(total / 2), using: &generator)
            chunks.insert(value)
            reference.insert(value, at: reference.firstIndex { $0 >= value } ?? reference.count)
            if step % 1_000 == 0 || step == total {
                #expect(Array(chunks) == reference)
            }
        }
        #expect(chunks.count == total)
        for probe in [-1, 0, 1, total / 4, total / 2 - 1, total / 2, total] {
            #expect(chunks.insertionIndex(of: probe) == (reference.firstIndex { $0 >= probe } ?? reference.count))
        }
    }

    @Test func appendsInOrderWithoutSearch() {
        var chunks = SortedChunks<Int>()
        let total = 3 * SortedChunks<Int>.maxChunk + 5
        for value in 0..<total {
            chunks.insert(value)
        }
        #expect(Array(chunks) == Array(0..<total))
        #expect(chunks.insertionIndex(of: SortedChunks<Int>.maxChunk) == SortedChunks<Int>.maxChunk)
        #expect(chunks.insertionIndex(of: total + 10) == total)
    }

    @Test func removesMatchingElementsAndKeepsOrder() {
        var chunks = SortedChunks<Int>()
        let total = 2 * SortedChunks<Int>.maxChunk + 3
        for value in (0..<total).reversed() {
            chunks.insert(value)
        }
        chunks.removeAll { $0 % 3 == 0 }
        let expected = (0..<total).filter { $0 % 3 != 0 }
        #expect(Array(chunks) == expected)
        chunks.insert(3)
        #expect(chunks.insertionIndex(of: 3) == 2)
        #expect(chunks[2] == 3)
        chunks.removeAll { _ in true }
        #expect(chunks.isEmpty)
        #expect(chunks.insertionIndex(of: 5) == 0)
    }
}
