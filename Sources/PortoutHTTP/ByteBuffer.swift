/// A growable byte buffer with a read index, for bytes received but not yet parsed.
///
/// Consumed bytes are reclaimed by moving the unread tail to the front once they make up half the storage, so
/// a long keep-alive connection does not grow its buffer without bound.
public struct ByteBuffer: Sendable {
    public private(set) var storage: [UInt8] = []
    public private(set) var readIndex = 0

    public init() {}

    public init(_ bytes: [UInt8]) {
        self.storage = bytes
    }

    public var readableCount: Int {
        self.storage.count - self.readIndex
    }

    public var isEmpty: Bool {
        self.readableCount == 0
    }

    public subscript(offset: Int) -> UInt8 {
        self.storage[self.readIndex + offset]
    }

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        self.storage.append(contentsOf: bytes)
    }

    /// Removes `count` bytes from the front of the readable region and returns them.
    public mutating func read(_ count: Int) -> [UInt8] {
        let bytes = Array(self.storage[self.readIndex..<(self.readIndex + count)])
        self.skip(count)
        return bytes
    }

    public mutating func skip(_ count: Int) {
        precondition(count <= self.readableCount, "cannot skip past the end of the buffer")
        self.readIndex += count
        if self.readIndex == self.storage.count {
            self.storage.removeAll(keepingCapacity: self.storage.capacity <= 1 << 20)
            self.readIndex = 0
        } else if self.readIndex >= 4096 && self.readIndex * 2 >= self.storage.count {
            self.storage.removeFirst(self.readIndex)
            self.readIndex = 0
        }
    }

    public func withReadableBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        try self.storage.withUnsafeBufferPointer { buffer in
            try body(UnsafeBufferPointer(rebasing: buffer[self.readIndex...]))
        }
    }
}
