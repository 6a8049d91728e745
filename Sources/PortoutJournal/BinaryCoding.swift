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
///
/// It reads from memory the caller keeps alive for the reader's lifetime, so replay decodes straight from the
/// segment bytes without copying each payload.
struct BinaryReader {
    private let bytes: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    var isAtEnd: Bool {
        self.offset == self.bytes.count
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) -> T? {
        let size = MemoryLayout<T>.size
        guard self.bytes.count - self.offset >= size else { return nil }
        let value = self.bytes.loadUnaligned(fromByteOffset: self.offset, as: T.self)
        self.offset += size
        return T(littleEndian: value)
    }

    mutating func skip(_ count: Int) -> Bool {
        guard self.bytes.count - self.offset >= count else { return false }
        self.offset += count
        return true
    }

    mutating func skipString() -> Bool {
        guard let count = self.read(UInt16.self) else { return false }
        return self.skip(Int(count))
    }

    mutating func readString() -> String? {
        guard let count = self.read(UInt16.self), self.bytes.count - self.offset >= Int(count) else { return nil }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: self.bytes[self.offset..<(self.offset + Int(count))]), as: UTF8.self)
        self.offset += Int(count)
        return text
    }

    /// Reads a length-prefixed blob; without `copy`, skips it and returns an empty array.
    mutating func readBlob(copy: Bool = true) -> [UInt8]? {
        guard let count = self.read(UInt32.self), self.bytes.count - self.offset >= Int(count) else { return nil }
        let blob = copy ? Array(self.bytes[self.offset..<(self.offset + Int(count))]) : []
        self.offset += Int(count)
        return blob
    }
}
