#if canImport(Glibc)
import Glibc
#endif

/// Writes to file descriptor 2, ignoring errors: a message must never stop the process, and Foundation's
/// `FileHandle.write` traps when standard error is a pipe whose reader has gone.
public enum StandardError {
    public static func write(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
            if written > 0 {
                offset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                return
            }
        }
    }

    public static func write(_ text: String) {
        self.write(Array(text.utf8))
    }
}
