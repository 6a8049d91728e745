import CCRC32C

/// CRC-32C (Castagnoli, polynomial 0x1EDC6F41 reflected as 0x82F63B78), the checksum of every journal frame.
///
/// Computed in C with the SSE 4.2 `crc32` instruction where the CPU has it, eight bytes an instruction, and
/// with slicing-by-8 tables otherwise. Recovery checks every frame of the journal at start, and each delivery
/// checks the frame it reads back, so the checksum is on both the start-up and the delivery path.
public enum CRC32C {
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        portout_crc32c(0, bytes.baseAddress, bytes.count)
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { self.checksum($0) }
    }
}
