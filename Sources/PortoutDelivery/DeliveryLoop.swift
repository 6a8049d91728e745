import CCurl
import CCurlShim
import PortoutJournal

/// The multi handle, the transfers in it and a pool of idle ones.
///
/// Thread-safety: `multi` is shared only for `curl_multi_wakeup`, which libcurl allows from any thread. All other
/// members are confined to the delivery thread, so the class is `@unchecked Sendable`.
final class DeliveryLoop: @unchecked Sendable {
    let multi: UnsafeMutableRawPointer
    var destinations: [String: DestinationRuntime]
    /// Destinations removed by a configuration reload, with the deliveries they still had. Nothing is started for
    /// them; attempts in flight at the reload settle here, and a later reload that adds one back takes it over.
    var detached: [String: DestinationRuntime] = [:]
    /// Saved modes of destinations held before a restart that are not configured now, by `tenant/destination`.
    /// They are kept in the saved file and applied if a reload configures the destination again.
    var heldUnconfigured: [String: DestinationControlFile.Entry] = [:]
    private var active: [UnsafeMutableRawPointer: CurlTransfer] = [:]
    private var idle: [CurlTransfer] = []
    /// Attempt records settled in the current pass, journaled together at its end.
    var outcomes: [JournalRecord] = []

    /// Returns the runtime of a configured or detached destination.
    func runtime(_ key: String) -> DestinationRuntime? {
        self.destinations[key] ?? self.detached[key]
    }

    init(destinations: [String: DestinationRuntime]) {
        CurlGlobal.initialise()
        guard let multi = curl_multi_init() else {
            fatalError("curl_multi_init failed: libcurl could not allocate a handle")
        }
        self.multi = multi
        self.destinations = destinations
        self.updateConnectionLimit()
    }

    /// Lets libcurl keep as many idle connections as the destinations may use at once.
    func updateConnectionLimit() {
        let connections = self.destinations.values.reduce(0) { $0 + $1.config.concurrency }
        _ = portout_curl_multi_setopt_long(self.multi, CURLMOPT_MAXCONNECTS, max(16, connections))
    }

    deinit {
        curl_multi_cleanup(self.multi)
    }

    var inFlightCount: Int {
        self.active.count
    }

    func takeTransfer() -> CurlTransfer {
        self.idle.popLast() ?? CurlTransfer()
    }

    func add(_ transfer: CurlTransfer) {
        self.active[transfer.handle] = transfer
        curl_multi_add_handle(self.multi, transfer.handle)
    }

    func remove(_ handle: UnsafeMutableRawPointer) -> CurlTransfer? {
        curl_multi_remove_handle(self.multi, handle)
        return self.active.removeValue(forKey: handle)
    }

    func recycle(_ transfer: CurlTransfer) {
        self.idle.append(transfer)
    }

    func cancelAll() {
        for handle in Array(self.active.keys) {
            _ = self.remove(handle)
        }
    }
}
