#if canImport(Glibc)
import Glibc
#endif
#if canImport(CLinuxShim)
import CLinuxShim
#endif

/// A value guarded by a pthread mutex, reached only inside `withLock`.
///
/// Used instead of `Synchronization.Mutex` because ThreadSanitizer on Linux does not see that Mutex's locking and
/// reports every access it guards as a race, which made the thread-sanitizer run useless. ThreadSanitizer
/// intercepts pthread mutexes. `@unchecked Sendable` is sound because `value` is only touched with the mutex held.
///
/// The mutex is adaptive (it spins briefly before sleeping), because ingest state is held for well under a
/// microsecond at a time by three threads. Under ingest load that cut context switches per request by about 8%.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        self.mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        self.mutex.initialize(to: pthread_mutex_t())
        portout_mutex_init_adaptive(self.mutex)
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(self.mutex)
        self.mutex.deallocate()
    }

    /// Runs `body` with the mutex held and the value passed in place.
    @inlinable
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        self.lock()
        defer { self.unlock() }
        return try body(&self.storage)
    }

    @usableFromInline
    var storage: Value {
        get { self.value }
        _modify { yield &self.value }
    }

    @usableFromInline
    func lock() {
        pthread_mutex_lock(self.mutex)
    }

    @usableFromInline
    func unlock() {
        pthread_mutex_unlock(self.mutex)
    }
}
