import PortoutCore
import Synchronization

/// The application behind an `HTTPServer`.
public protocol HTTPRequestHandler: Sendable {
    /// Returns a response to send at once, before the body is read, or nil to read the body.
    ///
    /// Called on an event-loop thread, so it must not block. A response returned here closes the connection if a
    /// body was announced, since the unread body would otherwise be taken for the next request.
    func checkHead(_ head: HTTPRequestHead, peer: String) -> HTTPResponse?

    /// Handles a complete request. The handler must call `responder.respond` exactly once, from any thread.
    ///
    /// Called on an event-loop thread, so it must not block; slow work goes elsewhere and responds later.
    func handle(_ request: HTTPRequest, peer: String, responder: HTTPResponder)

    /// Reports a request that the server rejected with `error.status` because it could not be parsed or was over
    /// a limit, with its head when that was read, as for a body over the limit. Returns whether it logged the
    /// rejection, so that the server does not log it again. Called on an event-loop thread, so it must
    /// not block.
    func rejected(_ error: HTTPParseError, peer: String) -> Bool
}

extension HTTPRequestHandler {
    public func rejected(_ error: HTTPParseError, peer: String) -> Bool {
        false
    }
}

/// Sends the response to one request; safe to pass to and call from any thread.
public final class HTTPResponder: Sendable {
    private let connections: LoopConnections
    private let connectionID: UInt64
    private let responded = Atomic<Bool>(false)

    init(connections: LoopConnections, connectionID: UInt64) {
        self.connections = connections
        self.connectionID = connectionID
    }

    public func respond(_ response: HTTPResponse) {
        let (exchanged, _) = self.responded.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing)
        precondition(exchanged, "a request was answered twice")
        let connections = self.connections
        let connectionID = self.connectionID
        connections.loop.execute {
            connections.deliver(response, to: connectionID)
        }
    }
}

extension HTTPResponse {
    /// Creates a JSON response from an `APIError`, with its extra headers.
    public init(error: APIError, closeConnection: Bool = false) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        for header in error.headers {
            headers.add(name: header.name, value: header.value)
        }
        self.init(
            status: error.status, headers: headers, body: JSONWriter.encode(error.jsonValue),
            closeConnection: closeConnection)
    }

    /// Creates a response whose body is JSON text already encoded.
    public init(status: Int, jsonBytes: [UInt8]) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        self.init(status: status, headers: headers, body: jsonBytes)
    }

    /// Creates a JSON response with the given status and value.
    public init(status: Int, json: JSONValue, headers extraHeaders: [(name: String, value: String)] = []) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        for header in extraHeaders {
            headers.add(name: header.name, value: header.value)
        }
        self.init(status: status, headers: headers, body: JSONWriter.encode(json))
    }
}
