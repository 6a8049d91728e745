import CCurl
import Dispatch
import Foundation
import PortoutCore
import PortoutDelivery

/// `portout-bench curl`: posts one body over and over with libcurl alone, driven the way the relay drives it.
///
/// It uses the same `CurlTransfer`, header set and multi-handle loop, with one multi handle per thread. A request
/// involves no queue, journal read, signing or outcome, so its rate is the most the relay's delivery could reach
/// on this machine. The delivery benchmarks print it beside the relay's own rate.
func runCurlCeiling(_ arguments: [String]) throws -> Int32 {
    let url: String
    let requests: Int
    let connections: Int
    let threads: Int
    let bodyBytes: Int
    do {
        guard let given = option("--url", in: arguments) else { throw UsageError("--url is required") }
        guard given.hasPrefix("http://") else {
            throw UsageError("--url must be http://127.0.0.1:PORT/PATH, not \"\(given)\"")
        }
        // libcurl is given the URL as written, so everything up to the path must pass the loopback check.
        let authority = given.dropFirst("http://".count).prefix { $0 != "/" }
        _ = try LoadOptions.parseLoopbackURL("http://" + authority)
        url = given
        requests = try integerOption("--requests", in: arguments, range: 1...10_000_000)
        connections = try integerOption("--connections", in: arguments, range: 1...1024, default: 8)
        threads = try integerOption(
            "--threads", in: arguments, range: 1...16, default: DeliveryDefaults().transferThreads)
        bodyBytes = try integerOption("--body-bytes", in: arguments, range: 0...(1 << 20), default: 560)
        guard threads <= connections else { throw UsageError("--threads must not exceed --connections") }
    } catch let error as UsageError {
        StandardError.write("portout-bench curl: \(error)\n\n\(usage)\n")
        return 2
    }

    // Headers as long as the relay's: an event id, a timestamp and one v1 signature of 44 base64 characters.
    let headers = DeliveryEngine.fixedHeaderLines + [
        "webhook-id: evt_" + String(repeating: "0", count: 26),
        "webhook-timestamp: 1700000000",
        "webhook-signature: v1," + String(repeating: "A", count: 43) + "=",
    ]
    let body = [UInt8](repeating: UInt8(ascii: "x"), count: bodyBytes)

    let failures = Locked(0)
    let group = DispatchGroup()
    let started = MonotonicClock.nowNs()
    for index in 0..<threads {
        // Connections and requests are split evenly, and the first threads take the remainders.
        let share = requests / threads + (index < requests % threads ? 1 : 0)
        let open = connections / threads + (index < connections % threads ? 1 : 0)
        group.enter()
        startNamedThread("curl-\(index)") {
            let failed = postRepeatedly(url: url, headers: headers, body: body, requests: share, connections: open)
            failures.withLock { $0 += failed }
            group.leave()
        }
    }
    group.wait()

    let elapsedUs = (MonotonicClock.nowNs() - started) / 1000
    let failed = failures.withLock { $0 }
    print("{\"requests\":\(requests),\"durationUs\":\(elapsedUs),\"failed\":\(failed)}")
    return failed == 0 ? 0 : 1
}

/// Sends `requests` posts over `connections` transfers on one multi handle and returns how many got no 2xx.
private func postRepeatedly(url: String, headers: [String], body: [UInt8], requests: Int, connections: Int) -> Int {
    let transfers = (0..<min(connections, requests)).map { _ in CurlTransfer() }
    guard let multi = curl_multi_init() else {
        fatalError("curl_multi_init failed: libcurl could not allocate a handle")
    }
    defer { curl_multi_cleanup(multi) }
    var byHandle: [UnsafeMutableRawPointer: CurlTransfer] = [:]
    var started = 0
    var finished = 0
    var failed = 0
    func start(_ transfer: CurlTransfer) {
        transfer.prepare(url: url, headers: headers, body: body, timeoutMs: 10_000)
        byHandle[transfer.handle] = transfer
        curl_multi_add_handle(multi, transfer.handle)
        started += 1
    }
    transfers.forEach(start)
    while finished < requests {
        var running: Int32 = 0
        curl_multi_perform(multi, &running)
        var remaining: Int32 = 0
        while let message = curl_multi_info_read(multi, &remaining) {
            guard message.pointee.msg == CURLMSG_DONE, let handle = message.pointee.easy_handle,
                let transfer = byHandle.removeValue(forKey: handle)
            else { continue }
            curl_multi_remove_handle(multi, handle)
            finished += 1
            if message.pointee.data.result != CURLE_OK || !(200..<300).contains(transfer.responseStatus) {
                failed += 1
            }
            if started < requests {
                start(transfer)
            }
        }
        if finished < requests {
            curl_multi_poll(multi, nil, 0, 1000, nil)
        }
    }
    return failed
}
