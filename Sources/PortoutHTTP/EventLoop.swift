import CLinuxShim
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PortoutCore
import Synchronization

/// Something registered with an event loop for readiness events on one descriptor.
protocol EventLoopHandler: AnyObject {
    func handleEvents(_ events: UInt32)
}

/// One thread running epoll: it owns the descriptors registered with it and runs tasks posted from elsewhere.
///
/// Thread-safety: `execute` may be called from any thread. Every other member is confined to the loop's own
/// thread, which is why the class is `@unchecked Sendable`.
public final class EventLoop: @unchecked Sendable {
    private let epollFD: Int32
    private let wakeFD: Int32
    private let pendingTasks = Locked<[@Sendable () -> Void]>([])
    private var handlers: [Int32: any EventLoopHandler] = [:]
    private var tickHandlers: [() -> Void] = []
    private var isRunning = true
    private let tickIntervalMs: Int32
    /// Scratch space for reads, shared by the loop's connections because only one reads at a time.
    let readBuffer: UnsafeMutableRawBufferPointer
    /// Monotonic milliseconds, refreshed once per loop iteration.
    private(set) var now: UInt64 = 0

    init(tickIntervalMs: Int32 = 100) throws(SystemError) {
        self.epollFD = try systemCall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
        do {
            self.wakeFD = try systemCall("eventfd") { eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC)) }
        } catch {
            Glibc.close(self.epollFD)
            throw error
        }
        self.tickIntervalMs = tickIntervalMs
        self.readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        var event = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(fd: self.wakeFD))
        _ = epoll_ctl(self.epollFD, EPOLL_CTL_ADD, self.wakeFD, &event)
        self.now = Self.monotonicMilliseconds()
    }

    deinit {
        Glibc.close(self.wakeFD)
        Glibc.close(self.epollFD)
        self.readBuffer.deallocate()
    }

    static func monotonicMilliseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1000 + UInt64(time.tv_nsec) / 1_000_000
    }

    /// Runs `task` on the loop's thread as soon as it is free. Safe to call from any thread.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        let wasEmpty = self.pendingTasks.withLock { tasks in
            tasks.append(task)
            return tasks.count == 1
        }
        if wasEmpty {
            var one: UInt64 = 1
            _ = Glibc.write(self.wakeFD, &one, 8)
        }
    }

    func register(_ fd: Int32, events: UInt32, handler: any EventLoopHandler) {
        var event = epoll_event(events: events, data: epoll_data_t(fd: fd))
        let status = epoll_ctl(self.epollFD, EPOLL_CTL_ADD, fd, &event)
        precondition(status == 0, "epoll_ctl ADD failed for descriptor \(fd), errno \(errno)")
        self.handlers[fd] = handler
    }

    func modify(_ fd: Int32, events: UInt32) {
        var event = epoll_event(events: events, data: epoll_data_t(fd: fd))
        _ = epoll_ctl(self.epollFD, EPOLL_CTL_MOD, fd, &event)
    }

    /// Removes the descriptor from the loop; the caller closes it afterwards.
    func deregister(_ fd: Int32) {
        _ = epoll_ctl(self.epollFD, EPOLL_CTL_DEL, fd, nil)
        self.handlers.removeValue(forKey: fd)
    }

    /// Adds a function that runs on every tick, about every `tickIntervalMs`, for timeouts.
    func onTick(_ handler: @escaping () -> Void) {
        self.tickHandlers.append(handler)
    }

    /// Ends `run()` after the current iteration. Call on the loop thread.
    func stopRunning() {
        self.isRunning = false
    }

    /// Runs the loop on the calling thread until `stopRunning()`.
    func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        var nextTick = Self.monotonicMilliseconds() + UInt64(self.tickIntervalMs)
        while self.isRunning {
            let count = events.withUnsafeMutableBufferPointer { buffer in
                epoll_wait(self.epollFD, buffer.baseAddress, Int32(buffer.count), self.tickIntervalMs)
            }
            self.now = Self.monotonicMilliseconds()
            if count > 0 {
                for index in 0..<Int(count) {
                    let fd = events[index].data.fd
                    if fd == self.wakeFD {
                        var value: UInt64 = 0
                        _ = Glibc.read(self.wakeFD, &value, 8)
                        continue
                    }
                    self.handlers[fd]?.handleEvents(events[index].events)
                }
            }
            self.runPendingTasks()
            if self.now >= nextTick {
                nextTick = self.now + UInt64(self.tickIntervalMs)
                for handler in self.tickHandlers {
                    handler()
                }
            }
        }
        self.runPendingTasks()
    }

    private func runPendingTasks() {
        while true {
            let tasks = self.pendingTasks.withLock { $0.takeAll() }
            if tasks.isEmpty { return }
            for task in tasks {
                task()
            }
        }
    }
}
