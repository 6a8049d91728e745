import PortoutCore

#if canImport(Glibc)
import Glibc
#endif

/// Read descriptors of segment files, shared by every thread that reads the journal back.
///
/// A descriptor stays open after a read, since deliveries and the read API read the same few segments again
/// and again. At most `maxOpen` stay open: opening one more closes the one unused for longest. A descriptor is
/// never closed during a read that uses it. One that retention takes out of use, or that the cap would close,
/// while reads use it is closed by the last of those reads.
///
/// Thread-safety: every member may be called from any thread.
final class SegmentReaders: Sendable {
    /// Enough for the segments that deliveries and the read API read at once, and a small share of the 512
    /// descriptors that the relay keeps free of client connections.
    static let maxOpen = 64

    private struct Entry {
        var fd: Int32
        var users = 0
        var lastUse: UInt64 = 0
    }

    private struct State {
        var open: [UInt64: Entry] = [:]
        /// Descriptors taken out of use while reads used them, with the number of those reads still running.
        var draining: [Int32: Int] = [:]
        var uses: UInt64 = 0
    }

    private let state = Locked(State())
    private let maxOpen: Int

    init(maxOpen: Int = SegmentReaders.maxOpen) {
        self.maxOpen = maxOpen
    }

    /// The number of descriptors open, including those that their last read will close.
    var openCount: Int {
        self.state.withLock { $0.open.count + $0.draining.count }
    }

    /// Runs `body` with a read descriptor of `segment`, which opens the file at `path()` if none is open.
    func withDescriptor<Value>(
        segment: UInt64, path: () -> String, _ body: (Int32) throws(JournalError) -> Value
    ) throws(JournalError) -> Value {
        let fd = try self.acquire(segment: segment, path: path)
        defer { self.release(segment: segment, fd: fd) }
        return try body(fd)
    }

    private func acquire(segment: UInt64, path: () -> String) throws(JournalError) -> Int32 {
        if let fd = self.state.withLock({ Self.use(segment, in: &$0) }) {
            return fd
        }
        let file = path()
        let opened: Int32
        do {
            opened = try systemCall("open") { Glibc.open(file, O_RDONLY | O_CLOEXEC) }
        } catch {
            throw JournalError(path: file, error)
        }
        let (fd, evicted) = self.state.withLock { state -> (Int32, Int32?) in
            // Another read may have opened the segment meanwhile.
            if let existing = Self.use(segment, in: &state) {
                return (existing, opened)
            }
            state.uses += 1
            state.open[segment] = Entry(fd: opened, users: 1, lastUse: state.uses)
            return (opened, Self.evictIdle(from: &state, keeping: self.maxOpen))
        }
        if let evicted {
            Glibc.close(evicted)
        }
        return fd
    }

    private static func use(_ segment: UInt64, in state: inout State) -> Int32? {
        guard state.open[segment] != nil else { return nil }
        state.uses += 1
        state.open[segment]!.users += 1
        state.open[segment]!.lastUse = state.uses
        return state.open[segment]!.fd
    }

    /// Removes the least recently used descriptor that no read uses, if more than `limit` are open, and returns
    /// it to be closed. Descriptors in use may keep the count above the limit for a while.
    private static func evictIdle(from state: inout State, keeping limit: Int) -> Int32? {
        guard state.open.count > limit else { return nil }
        let idle = state.open.filter { $0.value.users == 0 }
        guard let oldest = idle.min(by: { $0.value.lastUse < $1.value.lastUse }) else { return nil }
        state.open.removeValue(forKey: oldest.key)
        return oldest.value.fd
    }

    private func release(segment: UInt64, fd: Int32) {
        let closing = self.state.withLock { state -> Int32? in
            if state.open[segment]?.fd == fd {
                state.open[segment]!.users -= 1
                return Self.evictIdle(from: &state, keeping: self.maxOpen)
            }
            let remaining = state.draining[fd, default: 1] - 1
            if remaining > 0 {
                state.draining[fd] = remaining
                return nil
            }
            state.draining.removeValue(forKey: fd)
            return fd
        }
        if let closing {
            Glibc.close(closing)
        }
    }

    /// Takes the descriptors of `segments` out of use, as retention does for the segments it removed. Each is
    /// closed now, or by the last read using it.
    func retire(_ segments: [UInt64]) {
        let closing = self.state.withLock { state -> [Int32] in
            var closing: [Int32] = []
            for segment in segments {
                guard let entry = state.open.removeValue(forKey: segment) else { continue }
                if entry.users == 0 {
                    closing.append(entry.fd)
                } else {
                    state.draining[entry.fd] = entry.users
                }
            }
            return closing
        }
        closing.forEach { Glibc.close($0) }
    }

    /// Closes every descriptor; called once no read can start, as the journal closes.
    func closeAll() {
        let descriptors = self.state.withLock { state -> [Int32] in
            defer { state = State() }
            return state.open.values.map(\.fd) + state.draining.keys
        }
        descriptors.forEach { Glibc.close($0) }
    }
}
