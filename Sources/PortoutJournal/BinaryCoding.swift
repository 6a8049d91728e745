/// Little-endian encoding of the journal's record fields.
struct BinaryWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 256) {
        self.bytes.reserveCapacity(capacity)
    }

    mutating func write<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { self.bytes.append(contentsOf: $0) }
    }

    /// Writes a string with a 16-bit length; longer strings are a programming error because every string field
    /// (ids, types, names, error text) is bounded well below 64 KiB before it gets here.
    mutating func write(_ string: String) {
        let utf8 = Array(string.utf8)
        precondition(utf8.count <= Int(UInt16.max), "journal string field is longer than 65535 bytes")
        self.write(UInt16(utf8.count))
        self.bytes.append(contentsOf: utf8)
    }

    mutating func writeBlob(_ blob: [UInt8]) {
        self.write(UInt32(blob.count))
        self.bytes.append(contentsOf: blob)
    }
}

/// Reads what `BinaryWriter` wrote; every read checks bounds and returns nil past the end.
struct BinaryReader {
    private let bytes: [UInt8]
    private(set) var offset: Int

    init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    var isAtEnd: Bool {
        self.offset == self.bytes.count
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) -> T? {
        let size = MemoryLayout<T>.size
        guard self.bytes.count - self.offset >= size else { return nil }
        var value: T = 0
        for index in 0..<size {
            value |= T(truncatingIfNeeded: self.bytes[self.offset + index]) << (8 * index)
        }
        self.offset += size
        return value
    }

    mutating func readString() -> String? {
        guard let count = self.read(UInt16.self), self.bytes.count - self.offset >= Int(count) else { return nil }
        let text = String(decoding: self.bytes[self.offset..<(self.offset + Int(count))], as: UTF8.self)
        self.offset += Int(count)
        return text
    }

    mutating func readBlob() -> [UInt8]? {
        guard let count = self.read(UInt32.self), self.bytes.count - self.offset >= Int(count) else { return nil }
        let blob = Array(self.bytes[self.offset..<(self.offset + Int(count))])
        self.offset += Int(count)
        return blob
    }
}
