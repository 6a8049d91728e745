import CLinuxShim
import PortoutCore

/// The listener and connections of one event loop.
///
/// Thread-safety: confined to `loop`'s thread; other threads reach it only through `loop.execute`, which is why
/// it is `@unchecked Sendable`.
final class LoopConnections: EventLoopHandler, @unchecked Sendable {
    let loop: EventLoop
    let listener: Int32
    unowned let server: HTTPServer
    private var connections: [UInt64: HTTPConnection] = [:]
    private var nextID: UInt64 = 1
    let dateCache = HTTPDate.Cache()
    /// Set once the server stops accepting: every connection closes after its current response.
    private(set) var isDraining = false
    /// Set while accepting is paused after `accept4` failed, until the next tick.
    private var isAcceptPaused = false

    init(loop: EventLoop, listener: Int32, server: HTTPServer) {
        self.loop = loop
        self.listener = listener
        self.server = server
    }

    func runLoop() {
        self.loop.register(self.listener, events: EPOLLIN.rawValue, handler: self)
        self.loop.onTick { [unowned self] in
            self.checkDeadlines()
        }
        self.loop.run()
    }

    /// Accepts every waiting connection.
    func handleEvents(_ events: UInt32) {
        while true {
            let accepted: IOResult<(fd: Int32, peer: String, client: String)>
            do {
                accepted = try Socket.accept(self.listener)
            } catch {
                // EMFILE, ENFILE, ENOBUFS and the like. The listener stays readable, so polling it would spin.
                // It is left out of the poll until the next tick, and the connections wait in the backlog.
                self.pauseAccepting(error)
                return
            }
            guard case .done(let (fd, peer, client)) = accepted else { return }
            let open = self.server.openConnections.wrappingAdd(1, ordering: .relaxed).newValue
            if open > self.server.configuration.maxConnections {
                self.server.openConnections.wrappingSubtract(1, ordering: .relaxed)
                self.server.connectionLimitRejections.add(1, ordering: .relaxed)
                self.rejectOverLimit(fd, peer: peer, limit: "maxConnections", message: "The server is at its connection limit.")
                continue
            }
            guard let usage = self.server.openClientConnection(client) else {
                self.server.openConnections.wrappingSubtract(1, ordering: .relaxed)
                self.server.clientLimitRejections.add(1, ordering: .relaxed)
                self.rejectOverLimit(
                    fd, peer: peer, limit: "maxConnectionsPerClient",
                    message: "Too many connections are open from this client address.")
                continue
            }
            Socket.setNoDelay(fd)
            let id = self.nextID
            self.nextID += 1
            let connection = HTTPConnection(id: id, fd: fd, peer: peer, client: client, usage: usage, owner: self)
            self.connections[id] = connection
            self.loop.register(fd, events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue, handler: connection)
        }
    }

    /// Sends a short 503 to a connection over a limit and closes it without reading its request.
    private func rejectOverLimit(_ fd: Int32, peer: String, limit: String, message: String) {
        let error = APIError.serviceUnavailable(code: "tooManyConnections", message, retryAfterSeconds: 1)
        let bytes = HTTPResponse(error: error, closeConnection: true)
            .serialize(date: HTTPDate.now(), includeBody: true, close: true)
        _ = bytes.withUnsafeBytes { try? Socket.write(fd, $0) }
        Socket.close(fd)
        self.server.logger.warning(
            "connection rejected", ["reason": .string("limits.\(limit) reached"), "peer": .string(peer)])
    }

    func deliver(_ response: HTTPResponse, to id: UInt64) {
        self.connections[id]?.send(response)
    }

    func bufferStorage() -> Int {
        self.connections.values.reduce(0) { $0 + $1.bufferStorage }
    }

    func responder(for id: UInt64) -> HTTPResponder {
        HTTPResponder(connections: self, connectionID: id)
    }

    func remove(_ connection: HTTPConnection) {
        guard self.connections.removeValue(forKey: connection.id) != nil else { return }
        self.loop.deregister(connection.fd)
        Socket.close(connection.fd)
        self.server.openConnections.wrappingSubtract(1, ordering: .relaxed)
        self.server.closeClientConnection(connection.client)
    }

    private func pauseAccepting(_ error: SystemError) {
        guard !self.isAcceptPaused else { return }
        self.isAcceptPaused = true
        self.loop.deregister(self.listener)
        self.server.logger.warning(
            "accept failed; accepting paused for a tick",
            ["error": .string(error.description), "openConnections": .number(Double(self.server.connectionCount))])
    }

    private func resumeAccepting() {
        guard self.isAcceptPaused, !self.isDraining else { return }
        self.isAcceptPaused = false
        self.loop.register(self.listener, events: EPOLLIN.rawValue, handler: self)
    }

    private func checkDeadlines() {
        self.resumeAccepting()
        let now = self.loop.now
        for connection in Array(self.connections.values) where connection.deadline <= now {
            connection.deadlinePassed()
        }
    }

    /// Stops accepting and lets each connection finish the requests it has read, closing it after the response.
    /// Idle connections close at once.
    func beginDraining() {
        guard !self.isDraining else { return }
        self.isDraining = true
        if !self.isAcceptPaused {
            self.loop.deregister(self.listener)
        }
        Socket.close(self.listener)
        for connection in Array(self.connections.values) {
            connection.drain()
        }
    }

    func closeAll() {
        if !self.isDraining {
            if !self.isAcceptPaused {
                self.loop.deregister(self.listener)
            }
            Socket.close(self.listener)
        }
        for connection in Array(self.connections.values) {
            connection.close()
        }
        self.loop.stopRunning()
    }
}
