import CLinuxShim
import Foundation

/// Starts `body` on a new thread and gives the kernel its name as well, so `top -H`, `ps -L`, gdb, perf and
/// `/proc/PID/task/*/comm` show which of the relay's threads is which: Foundation's `Thread.name` stays inside
/// the process on Linux. The kernel keeps the first 15 bytes of a name.
public func startNamedThread(_ name: String, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread {
        _ = portout_set_thread_name(name)
        body()
    }
    thread.name = name
    thread.start()
}
