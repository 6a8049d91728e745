import Dispatch
import Foundation
import PortoutCore
import PortoutHTTP
import Synchronization

/// A downstream HTTP server on 127.0.0.1 that records every request and replies as a test script chooses.
public final class RecordingSink: Sendable {
    public struct Received: Sendable {
        public var method: String
        public var path: String
        public var headers: HTTPHeaders
        public var body: [UInt8]
        public var atMs: Int64
        /// Requests being handled when this one arrived, itself included.
        public var activeAtArrival = 0

        public var json: JSONObject? {
            (try? JSONParser.parse(self.body))?.objectValue
        }

        /// The port out's status in the delivered event, if it carries one.
        public var status: String? {
            self.json?["data"]?.objectValue?["status"]?.stringValue
        }

        public var portOut: String? {
            guard let data = self.json?["data"]?.objectValue, data["object"]?.stringValue == "portOut" else {
                return nil
            }
            return data["id"]?.stringValue
        }
    }

    /// The reply to one request: a response, sent after an optional delay.
    public struct Reply: Sendable {
        public var response: HTTPResponse
        public var delaySeconds: Double

        public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = [], delaySeconds: Double = 0) {
            var fields = HTTPHeaders()
            for (name, value) in headers {
                fields.add(name: name, value: value)
            }
            self.response = HTTPResponse(status: status, headers: fields, body: body)
            self.delaySeconds = delaySeconds
        }
    }

    private let server: HTTPServer
    private let handler: Handler
    public let port: Int

    /// Starts the sink; `script` gets each request with its 0-based arrival index and returns the reply.
    public init(port: Int = 0, script: @escaping @Sendable (Int, Received) -> Reply = { _, _ in Reply(status: 204) })
        throws
    {
        var limits = Limits()
        limits.maxBodyBytes = 1 << 20
        self.handler = Handler(script: script)
        self.server = HTTPServer(
            configuration: HTTPServer.Configuration(host: "127.0.0.1", port: port, eventLoops: 1, limits: limits),
            handler: self.handler, logger: Logger(level: .error))
        self.port = try self.server.start()
    }

    public var url: String {
        "http://127.0.0.1:\(self.port)"
    }

    public var received: [Received] {
        self.handler.received.withLock { $0 }
    }

    public func shutdown() {
        self.server.shutdown()
    }

    final class Handler: HTTPRequestHandler {
        let script: @Sendable (Int, Received) -> Reply
        let received = Locked<[Received]>([])
        let arrivals = Atomic<Int>(0)
        let active = Atomic<Int>(0)

        init(script: @escaping @Sendable (Int, Received) -> Reply) {
            self.script = script
        }

        func checkHead(_ head: HTTPRequestHead, peer: String) -> HTTPResponse? {
            nil
        }

        func handle(_ request: HTTPRequest, peer: String, responder: HTTPResponder) {
            var entry = Received(
                method: request.head.method,
                path: String(request.head.path), headers: request.head.headers, body: request.body,
                atMs: Int64(Date().timeIntervalSince1970 * 1000))
            entry.activeAtArrival = self.active.wrappingAdd(1, ordering: .relaxed).newValue
            let index = self.arrivals.wrappingAdd(1, ordering: .relaxed).oldValue
            let reply = self.script(index, entry)
            self.received.withLock { $0.append(entry) }
            // The count drops before the response leaves, so it never exceeds what the client has in flight.
            let finish: @Sendable () -> Void = {
                self.active.wrappingSubtract(1, ordering: .relaxed)
                responder.respond(reply.response)
            }
            if reply.delaySeconds > 0 {
                DispatchQueue.global().asyncAfter(deadline: .now() + reply.delaySeconds, execute: finish)
            } else {
                finish()
            }
        }
    }
}
