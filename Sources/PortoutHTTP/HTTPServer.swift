import Foundation
import PortoutCore
import Synchronization

/// An HTTP/1.1 server on POSIX sockets with one epoll event loop per thread.
///
/// Each loop has its own SO_REUSEPORT listening socket, so the kernel spreads new connections across loops and
/// a connection stays on one thread for its whole life.
public final class HTTPServer: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var eventLoops: Int
        public var parserLimits: HTTPParserLimits
        public var maxConnections: Int
        public var maxConnectionsPerClient: Int
        public var maxBufferedRequestBytes: Int
        public var maxBufferedRequestBytesPerClient: Int
        public var headerTimeoutMs: UInt64
        public var bodyTimeoutMs: UInt64
        public var idleTimeoutMs: UInt64

        public init(host: String, port: Int, eventLoops: Int, limits: Limits) {
            self.host = host
            self.port = port
            self.eventLoops = eventLoops
            self.parserLimits = HTTPParserLimits(maxHeaderBytes: limits.maxHeaderBytes, maxBodyBytes: limits.maxBodyBytes)
            self.maxConnections = limits.maxConnections
            self.maxConnectionsPerClient = limits.maxConnectionsPerClient
            self.maxBufferedRequestBytes = limits.maxBufferedRequestBytes
            self.maxBufferedRequestBytesPerClient = limits.maxBufferedRequestBytesPerClient
            self.headerTimeoutMs = UInt64(limits.headerTimeoutMs)
            self.bodyTimeoutMs = UInt64(limits.bodyTimeoutMs)
            self.idleTimeoutMs = UInt64(limits.idleTimeoutMs)
        }
    }

    public let configuration: Configuration
    let handler: any HTTPRequestHandler
    let logger: Logger
    /// Open connections across all loops, checked against `maxConnections` on accept.
    let openConnections = Atomic<Int>(0)
    /// Bytes read from clients whose requests have no response yet, across all loops, checked against
    /// `maxBufferedRequestBytes`.
    let bufferedRequestBytes = Atomic<Int>(0)
    /// Requests rejected because `maxBufferedRequestBytes` was reached, and those rejected because their client's
    /// share of it was.
    let bufferFullRejections = Atomic<Int>(0)
    let clientShareRejections = Atomic<Int>(0)
    /// The usage of each client address, across all loops. Only addresses with a connection open have an entry.
    private let clients = Locked<[String: ClientUsage]>([:])
    /// Connections refused at accept, by the limit they reached.
    let connectionLimitRejections = Atomic<Int>(0)
    let clientLimitRejections = Atomic<Int>(0)
    /// Whether each response is logged as a `request` line; a configuration reload may switch it.
    public let accessLog = Atomic<Bool>(false)
    private let state = Locked<RunState>(RunState())

    private struct RunState {
        var loops: [LoopConnections] = []
        var finished: [DispatchSemaphore] = []
        var port = 0
    }

    public init(configuration: Configuration, handler: any HTTPRequestHandler, logger: Logger) {
        self.configuration = configuration
        self.handler = handler
        self.logger = logger
    }

    /// The port the server listens on, which differs from the configured one when that was 0.
    public var port: Int {
        self.state.withLock { $0.port }
    }

    public var connectionCount: Int {
        self.openConnections.load(ordering: .relaxed)
    }

    /// Bytes read from clients whose requests have no response yet.
    public var bufferedBytes: Int {
        self.bufferedRequestBytes.load(ordering: .relaxed)
    }

    /// Requests rejected with 503 since start because `maxBufferedRequestBytes` was reached (`total`), or because
    /// the connections from their client address held its share of it (`perClient`).
    public var bufferFullRejectionCounts: (total: Int, perClient: Int) {
        (self.bufferFullRejections.load(ordering: .relaxed), self.clientShareRejections.load(ordering: .relaxed))
    }

    /// The buffered-bytes limit that a read reached.
    enum BufferLimit {
        case total
        case clientShare
    }

    /// Adds `bytes` to the buffered counts of the server and of the connection's client, unless that would pass
    /// `maxBufferedRequestBytes` or the client's share of it, or always when `force` is set. Returns the limit
    /// that stopped it, or nil when it added them.
    func chargeBuffered(_ bytes: Int, client: ClientUsage, force: Bool = false) -> BufferLimit? {
        if force {
            client.bufferedBytes.add(bytes, ordering: .relaxed)
            self.bufferedRequestBytes.add(bytes, ordering: .relaxed)
            return nil
        }
        guard Self.add(bytes, to: self.bufferedRequestBytes, limit: self.configuration.maxBufferedRequestBytes) else {
            return .total
        }
        guard Self.add(bytes, to: client.bufferedBytes, limit: self.configuration.maxBufferedRequestBytesPerClient) else {
            self.bufferedRequestBytes.subtract(bytes, ordering: .relaxed)
            return .clientShare
        }
        return nil
    }

    private static func add(_ bytes: Int, to counter: borrowing Atomic<Int>, limit: Int) -> Bool {
        var current = counter.load(ordering: .relaxed)
        while current + bytes <= limit {
            let (exchanged, original) = counter.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged {
                return true
            }
            current = original
        }
        return false
    }

    func releaseBuffered(_ bytes: Int, client: ClientUsage) {
        client.bufferedBytes.subtract(bytes, ordering: .relaxed)
        self.bufferedRequestBytes.subtract(bytes, ordering: .relaxed)
    }

    /// Returns the bytes a connection of `client` may still read before `maxBufferedRequestBytes` or the client's
    /// share of it is reached.
    func bufferRoom(for client: ClientUsage) -> Int {
        let total = self.configuration.maxBufferedRequestBytes - self.bufferedRequestBytes.load(ordering: .relaxed)
        let own = self.configuration.maxBufferedRequestBytesPerClient - client.bufferedBytes.load(ordering: .relaxed)
        return max(0, min(total, own))
    }

    /// Counts a new connection from `client` unless that client already has `maxConnectionsPerClient` open.
    /// Returns the client's usage, which the connection charges its buffered bytes to, or nil at the limit.
    func openClientConnection(_ client: String) -> ClientUsage? {
        let limit = self.configuration.maxConnectionsPerClient
        return self.clients.withLock { clients in
            let usage = clients[client] ?? ClientUsage()
            guard usage.connections < limit else { return nil }
            usage.connections += 1
            clients[client] = usage
            return usage
        }
    }

    func closeClientConnection(_ client: String) {
        self.clients.withLock { clients in
            guard let usage = clients[client] else { return }
            usage.connections -= 1
            if usage.connections == 0 {
                clients[client] = nil
            }
        }
    }

    /// Connections refused at accept because `maxConnections` or `maxConnectionsPerClient` was reached.
    public var connectionRejectionCounts: (total: Int, perClient: Int) {
        (self.connectionLimitRejections.load(ordering: .relaxed), self.clientLimitRejections.load(ordering: .relaxed))
    }

    /// Adds up the buffer storage of every open connection, input and output. Each loop counts its own
    /// connections on its thread, so this waits for every loop; tests use it to check what idle connections keep.
    func connectionBufferStorage() -> Int {
        let loops = self.state.withLock { $0.loops }
        let total = Atomic<Int>(0)
        let counted = DispatchGroup()
        for connections in loops {
            counted.enter()
            connections.loop.execute {
                total.add(connections.bufferStorage(), ordering: .relaxed)
                counted.leave()
            }
        }
        counted.wait()
        return total.load(ordering: .relaxed)
    }

    /// Binds the listening sockets and starts the event-loop threads; returns the bound port.
    @discardableResult
    public func start() throws(SystemError) -> Int {
        var port = self.configuration.port
        var loops: [LoopConnections] = []
        if port != 0 {
            try Socket.checkAvailable(host: self.configuration.host, port: port)
        }
        do {
            for _ in 0..<self.configuration.eventLoops {
                let listener = try Socket.listen(host: self.configuration.host, port: port)
                if port == 0 {
                    port = try Socket.localPort(listener)
                }
                let loop = try EventLoop()
                loops.append(LoopConnections(loop: loop, listener: listener, server: self))
            }
        } catch {
            for loop in loops {
                Socket.close(loop.listener)
            }
            throw error
        }
        var finished: [DispatchSemaphore] = []
        for (index, connections) in loops.enumerated() {
            let done = DispatchSemaphore(value: 0)
            startNamedThread("http-loop-\(index)") {
                connections.runLoop()
                done.signal()
            }
            finished.append(done)
        }
        self.state.withLock { state in
            state.loops = loops
            state.finished = finished
            state.port = port
        }
        return port
    }

    /// Stops accepting without waiting: each connection closes after its response to the requests already read.
    public func beginDraining() {
        let loops = self.state.withLock { $0.loops }
        for connections in loops {
            connections.loop.execute {
                connections.beginDraining()
            }
        }
    }

    /// Stops accepting, if `beginDraining` has not, and waits up to `timeoutMs` for responses to the requests
    /// already read. Returns the connections still open when the time ran out, which `shutdown` then closes.
    @discardableResult
    public func drain(timeoutMs: Int64) -> Int {
        self.beginDraining()
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, timeoutMs)) * 1_000_000
        while self.connectionCount > 0 && DispatchTime.now().uptimeNanoseconds < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        return self.connectionCount
    }

    /// Closes the listeners and every connection, then waits for the loop threads to end.
    public func shutdown() {
        let (loops, finished) = self.state.withLock { state -> ([LoopConnections], [DispatchSemaphore]) in
            let loopsAndSignals = (state.loops, state.finished)
            state.loops = []
            state.finished = []
            return loopsAndSignals
        }
        for connections in loops {
            connections.loop.execute {
                connections.closeAll()
            }
        }
        for done in finished {
            done.wait()
        }
    }
}

/// The usage of one client address: its open connections, checked against `maxConnectionsPerClient`, and their
/// buffered request bytes, checked against the client's share of `maxBufferedRequestBytes`.
///
/// Thread-safety: `connections` changes only under the server's lock of its client map; each connection charges
/// `bufferedBytes` from its own loop, atomically.
final class ClientUsage: @unchecked Sendable {
    var connections = 0
    let bufferedBytes = Atomic<Int>(0)
}
