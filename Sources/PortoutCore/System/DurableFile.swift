#if canImport(Glibc)
import Glibc
#endif

/// Small files replaced whole and durably: written beside the target, synced, renamed over it, and the directory
/// synced, so a crash leaves either the old content or the new one.
public enum DurableFile {
    public static func replace(path: String, with bytes: [UInt8]) throws(SystemError) {
        let temporary = path + ".tmp"
        let fd = try systemCall("open") { open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600) }
        do {
            var written = 0
            while written < bytes.count {
                written += try systemCall("write") {
                    bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
                }
            }
            _ = try systemCall("fsync") { fsync(fd) }
        } catch {
            _ = close(fd)
            _ = unlink(temporary)
            throw error
        }
        _ = close(fd)
        do {
            _ = try systemCall("rename") { rename(temporary, path) }
        } catch {
            _ = unlink(temporary)
            throw error
        }
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let directoryFD = try systemCall("open") { open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { _ = close(directoryFD) }
        _ = try systemCall("fsync") { fsync(directoryFD) }
    }

    /// Returns the name that a state file which cannot be read is moved or copied to, `path.unreadable-<milliseconds>`.
    public static func asideName(for path: String) -> String {
        path + ".unreadable-\(WallClock.milliseconds())"
    }

    /// Renames a state file that cannot be read to `asideName(for:)`, so that the next save does not replace it,
    /// and returns the new path, or nil if the rename failed.
    public static func moveAside(path: String) -> String? {
        let movedTo = self.asideName(for: path)
        return rename(path, movedTo) == 0 ? movedTo : nil
    }

    /// Links a state file that cannot be read to `asideName(for:)` as well, and returns that path, or nil if the
    /// link failed. Unlike `moveAside`, the file stays where it is until a save replaces it, so a save that
    /// fails, or a crash before it, leaves the next start to find the same unreadable file.
    public static func linkAside(path: String) -> String? {
        let linkedTo = self.asideName(for: path)
        return link(path, linkedTo) == 0 ? linkedTo : nil
    }

    /// Reads a whole file, or returns nil if it does not exist. A symbolic link to a file that does not exist
    /// is an error, not a missing file, since what it pointed at may have held state.
    public static func read(path: String) throws(SystemError) -> [UInt8]? {
        let fd: Int32
        do {
            fd = try systemCall("open") { open(path, O_RDONLY | O_CLOEXEC) }
        } catch where error.errno == ENOENT {
            var status = stat()
            guard lstat(path, &status) == 0 else { return nil }
            throw SystemError(operation: "open the target of symbolic link \(path)", errno: ENOENT)
        }
        defer { _ = close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = try systemCall("read") { chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }
            if count == 0 {
                return bytes
            }
            bytes.append(contentsOf: chunk[..<count])
        }
    }
}
