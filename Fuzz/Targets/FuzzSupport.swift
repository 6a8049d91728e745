// Helpers compiled into every fuzz target. Each target is this file plus one harness file, built by
// tools/fuzz.py into its own libFuzzer binary.

/// Stops the run with `message` when `condition` is false, so that libFuzzer saves the input as a crash.
///
/// The targets are built with `-O`, where a failed `precondition` traps without printing its message.
func fuzzCheck(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        fatalError(message())
    }
}

/// Copies libFuzzer's input into an array.
func fuzzInputBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// Returns an offset in `0...bytes.count` computed from the bytes (FNV-1a), so that each input also chooses
/// where it is split without spending any of its bytes on the choice.
func fuzzSplitOffset(_ bytes: [UInt8]) -> Int {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    for byte in bytes {
        hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
    }
    return Int(hash % UInt64(bytes.count + 1))
}
