import PortoutCore
import Testing

struct ArrayHandOverTests {
    @Test func takeAllReturnsEveryElementInOrder() {
        var queue = [3, 1, 2]
        #expect(queue.takeAll() == [3, 1, 2])
        #expect(queue.isEmpty)
        queue.append(4)
        #expect(queue.takeAll() == [4])
        #expect(queue.takeAll() == [])
    }

    /// The taken elements stay intact when the queue is filled again, since the two no longer share a buffer.
    @Test func takenBatchIsIndependent() {
        var queue = ["a", "b"]
        let batch = queue.takeAll()
        queue.append("c")
        #expect(batch == ["a", "b"])
        #expect(queue == ["c"])
    }

    /// After a burst the room kept is at most 16 KiB of elements, and an empty turn keeps none.
    @Test func roomKeptIsBounded() {
        var queue = [UInt64](repeating: 7, count: 100_000)
        #expect(queue.takeAll().count == 100_000)
        #expect(queue.capacity >= 2_048)
        #expect(queue.capacity < 4_096)
        queue.append(1)
        _ = queue.takeAll()
        #expect(queue.capacity < 64)
        _ = queue.takeAll()
        #expect(queue.capacity == 0)
    }

    /// Only an append after a `takeAll`, into an empty queue, reports that the consumer needs a wake-up.
    @Test func handOverReportsFirstAppend() {
        var queue: [Int] = []
        let first = queue.append(handingOver: [1])
        let second = queue.append(handingOver: [2, 3])
        #expect(first)
        #expect(!second)
        #expect(queue.takeAll() == [1, 2, 3])
        let afterTake = queue.append(handingOver: CollectionOfOne(4))
        #expect(afterTake)
    }
}
