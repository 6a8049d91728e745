import CCurl
import CCurlShim
import Foundation
import PortoutCore

/// A thread with its own libcurl multi handle that runs transfers for the delivery thread.
///
/// libcurl does all of a multi handle's work on the thread that drives it, and that work (request building,
/// URL parsing, response parsing) is most of a delivery's cost, so one thread caps the delivery rate. The delivery
/// thread keeps every queue and decision and hands prepared transfers to workers, which send them and hand them
/// back when they finish, waking the delivery thread.
///
/// Thread-safety: `start`, `takeFinished` and `stop` may be called from any thread, because the inbox and the
/// finished list are behind locks. Only the worker's thread touches the multi handle and the active transfers. A
/// transfer belongs to whichever thread holds it, and passes between threads only through those locked lists.
/// That is why the class is `@unchecked Sendable`.
final class CurlWorker: @unchecked Sendable {
    struct Finished {
        var transfer: CurlTransfer
        var code: CURLcode
    }

    let multi: UnsafeMutableRawPointer
    private let inbox = Locked<(transfers: [CurlTransfer], isStopping: Bool)>(([], false))
    private let finished = Locked<[Finished]>([])
    private var active: [UnsafeMutableRawPointer: CurlTransfer] = [:]
    private let stopped = DispatchSemaphore(value: 0)
    /// Wakes the delivery thread, whose multi handle waits in `curl_multi_poll`.
    private let notify: @Sendable () -> Void

    init(name: String, maxConnections: Int, notify: @escaping @Sendable () -> Void) {
        CurlGlobal.initialise()
        guard let multi = curl_multi_init() else {
            fatalError("curl_multi_init failed: libcurl could not allocate a handle")
        }
        self.multi = multi
        self.notify = notify
        self.setMaxConnections(maxConnections)
        startNamedThread(name) { [self] in self.run() }
    }

    deinit {
        curl_multi_cleanup(self.multi)
    }

    /// Sets how many idle connections the worker keeps. libcurl reads the option on the worker's next pass.
    func setMaxConnections(_ count: Int) {
        _ = portout_curl_multi_setopt_long(self.multi, CURLMOPT_MAXCONNECTS, max(16, count))
    }

    /// Sends a prepared transfer; it comes back through `takeFinished`.
    ///
    /// Only the first transfer into an empty inbox wakes the worker, because the worker takes the whole inbox
    /// after each wake-up. A wake-up costs a socket write.
    func start(_ transfer: CurlTransfer) {
        let wasEmpty = self.inbox.withLock { $0.transfers.append(handingOver: CollectionOfOne(transfer)) }
        if wasEmpty {
            curl_multi_wakeup(self.multi)
        }
    }

    /// Returns the transfers that finished since the last call.
    func takeFinished() -> [Finished] {
        self.finished.withLock { $0.takeAll() }
    }

    /// Abandons the transfers in flight and ends the thread; returns once it has ended. Transfers not yet
    /// finished are dropped unreported, as the delivery thread's own are at shutdown.
    func stop() {
        self.inbox.withLock { $0.isStopping = true }
        curl_multi_wakeup(self.multi)
        self.stopped.wait()
    }

    private func run() {
        while true {
            let (incoming, isStopping) = self.inbox.withLock { inbox in
                (inbox.transfers.takeAll(), inbox.isStopping)
            }
            if isStopping {
                for handle in self.active.keys {
                    curl_multi_remove_handle(self.multi, handle)
                }
                self.active.removeAll()
                self.stopped.signal()
                return
            }
            for transfer in incoming {
                self.active[transfer.handle] = transfer
                curl_multi_add_handle(self.multi, transfer.handle)
            }
            var running: Int32 = 0
            curl_multi_perform(self.multi, &running)
            var done: [Finished] = []
            var remaining: Int32 = 0
            while let message = curl_multi_info_read(self.multi, &remaining) {
                guard message.pointee.msg == CURLMSG_DONE, let handle = message.pointee.easy_handle,
                    let transfer = self.active.removeValue(forKey: handle)
                else { continue }
                curl_multi_remove_handle(self.multi, handle)
                done.append(Finished(transfer: transfer, code: message.pointee.data.result))
            }
            if !done.isEmpty {
                // The delivery thread takes the whole list after each wake-up, so only a batch into an empty list
                // wakes it.
                let wasEmpty = self.finished.withLock { $0.append(handingOver: done) }
                if wasEmpty {
                    self.notify()
                }
            }
            curl_multi_poll(self.multi, nil, 0, 1000, nil)
        }
    }
}
