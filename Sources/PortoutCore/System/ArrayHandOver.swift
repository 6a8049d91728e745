extension Array {
    /// Returns every element of a queue that one thread fills and another drains, and leaves it empty with
    /// room for as many elements as it had, up to 16 KiB of them.
    ///
    /// Copying the queue and then calling `removeAll(keepingCapacity: true)` allocates a buffer of the queue's
    /// largest size ever on each turn, because the copy still shares the old buffer.
    public mutating func takeAll() -> [Element] {
        var batch: [Element] = []
        swap(&batch, &self)
        let maxKept = Swift.max(16, 16_384 / Swift.max(1, MemoryLayout<Element>.stride))
        self.reserveCapacity(Swift.min(batch.count, maxKept))
        return batch
    }

    /// Appends `elements` and returns whether the array was empty before, for a producer that wakes the consumer
    /// only for the first item since the consumer's last `takeAll`.
    public mutating func append(handingOver elements: some Sequence<Element>) -> Bool {
        let wasEmpty = self.isEmpty
        self.append(contentsOf: elements)
        return wasEmpty
    }
}
