import CCurl
import CCurlShim
import Dispatch
import Foundation
import PortoutCore
import Synchronization

/// A small asynchronous HTTP client over one libcurl multi handle on its own thread, for requests that are
/// not deliveries: calls forwarded to the carrier, and the emulator's webhooks.
///
/// Thread-safety: `send` and `shutdown` may be called from any thread; completions run on the client's thread
/// and must not block.
public final class HTTPClient: Sendable {
    public struct Request: Sendable {
        public var method: String
        public var url: String
        public var headers: [(name: String, value: String)]
        public var body: [UInt8]
        public var timeoutMs: Int

        public init(
            method: String, url: String, headers: [(name: String, value: String)] = [], body: [UInt8] = [],
            timeoutMs: Int = 10_000
        ) {
            self.method = method
            self.url = url
            self.headers = headers
            self.body = body
            self.timeoutMs = timeoutMs
        }
    }

    public struct Response: Sendable {
        public var status: Int
        public var contentType: String?
        public var retryAfter: String?
        public var body: [UInt8]
        /// Whether the body was longer than `maxResponseBytes` and was cut.
        public var isTruncated: Bool
    }

    /// A request that got no response: libcurl's text for the failure.
    public struct TransportError: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    public typealias Completion = @Sendable (Result<Response, TransportError>) -> Void

    /// Response bodies beyond this are cut; every response the relay forwards is far smaller.
    public static let maxResponseBytes = 1 << 20

    private let inbox = Locked<Inbox>(Inbox())
    private let stopped = DispatchSemaphore(value: 0)
    private let state: ClientState

    private struct Inbox {
        var requests: [(Request, Completion)] = []
        var isStopping = false
    }

    /// The multi handle and the transfers in flight. `multi` is shared only for `curl_multi_wakeup`, which
    /// libcurl allows from any thread; everything else is confined to the client's thread.
    final class ClientState: @unchecked Sendable {
        let multi: UnsafeMutableRawPointer
        var active: [UnsafeMutableRawPointer: (CurlTransfer, Completion)] = [:]
        var idle: [CurlTransfer] = []

        init() {
            CurlGlobal.initialise()
            guard let multi = curl_multi_init() else {
                fatalError("curl_multi_init failed: libcurl could not allocate a handle")
            }
            self.multi = multi
        }

        deinit {
            curl_multi_cleanup(self.multi)
        }
    }

    public init(name: String) {
        self.state = ClientState()
        startNamedThread(name) { [self] in self.run() }
    }

    public func send(_ request: Request, completion: @escaping Completion) {
        let accepted = self.inbox.withLock { inbox -> Bool in
            guard !inbox.isStopping else { return false }
            inbox.requests.append((request, completion))
            return true
        }
        guard accepted else {
            completion(.failure(TransportError(description: "the HTTP client is shut down")))
            return
        }
        curl_multi_wakeup(self.state.multi)
    }

    /// Fails requests still in flight and stops the thread.
    public func shutdown() {
        let alreadyStopping = self.inbox.withLock { inbox -> Bool in
            defer { inbox.isStopping = true }
            return inbox.isStopping
        }
        guard !alreadyStopping else { return }
        curl_multi_wakeup(self.state.multi)
        self.stopped.wait()
    }

    private func run() {
        let state = self.state
        while true {
            let (incoming, isStopping) = self.inbox.withLock { inbox in
                let taken = inbox.requests
                inbox.requests.removeAll()
                return (taken, inbox.isStopping)
            }
            if isStopping {
                for (handle, (_, completion)) in state.active {
                    curl_multi_remove_handle(state.multi, handle)
                    completion(.failure(TransportError(description: "the HTTP client was shut down")))
                }
                state.active.removeAll()
                for (_, completion) in incoming {
                    completion(.failure(TransportError(description: "the HTTP client was shut down")))
                }
                self.stopped.signal()
                return
            }
            for (request, completion) in incoming {
                let transfer = state.idle.popLast() ?? CurlTransfer()
                var headers = request.headers.map { "\($0.name): \($0.value)" } + ["Expect:"]
                if !request.headers.contains(where: { $0.name.lowercased() == "content-type" }) {
                    // Otherwise libcurl labels every POST body as a form.
                    headers.append("Content-Type:")
                }
                transfer.prepare(
                    method: request.method, url: request.url, headers: headers, body: request.body,
                    timeoutMs: request.timeoutMs, bodyLimit: Self.maxResponseBytes)
                state.active[transfer.handle] = (transfer, completion)
                curl_multi_add_handle(state.multi, transfer.handle)
            }
            var running: Int32 = 0
            curl_multi_perform(state.multi, &running)
            var remaining: Int32 = 0
            while let message = curl_multi_info_read(state.multi, &remaining) {
                guard message.pointee.msg == CURLMSG_DONE, let handle = message.pointee.easy_handle,
                    let (transfer, completion) = state.active.removeValue(forKey: handle)
                else { continue }
                curl_multi_remove_handle(state.multi, handle)
                let code = message.pointee.data.result
                if code == CURLE_OK {
                    completion(.success(Response(
                        status: transfer.responseStatus, contentType: transfer.contentType,
                        retryAfter: transfer.retryAfterValue, body: transfer.responseBody,
                        isTruncated: transfer.isResponseTruncated)))
                } else {
                    completion(.failure(TransportError(description: String(cString: curl_easy_strerror(code)))))
                }
                state.idle.append(transfer)
            }
            curl_multi_poll(state.multi, nil, 0, 1000, nil)
        }
    }
}
