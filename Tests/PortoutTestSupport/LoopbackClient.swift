import Foundation
import PortoutCore
import PortoutHTTP

#if canImport(Glibc)
import Glibc
#endif

/// A blocking HTTP/1.1 client over one TCP connection to 127.0.0.1, for tests that need control of every byte.
public final class LoopbackClient {
    public let fd: Int32
    private var received: [UInt8] = []

    public struct Response: Sendable {
        public var status: Int
        public var headers: [(name: String, value: String)]
        public var body: [UInt8]

        public func header(_ name: String) -> String? {
            self.headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }

        public var json: JSONValue? {
            try? JSONParser.parse(self.body)
        }
    }

    /// Connects, from `sourceHost` if given, with reads timing out after `readTimeoutSeconds` so a test never
    /// hangs on a silent server. Any 127.x.y.z address is a loopback source on Linux.
    public init(port: Int, readTimeoutSeconds: Int = 10, sourceHost: String? = nil) throws {
        self.fd = try Socket.connect(host: "127.0.0.1", port: port, sourceHost: sourceHost)
        var timeout = timeval(tv_sec: readTimeoutSeconds, tv_usec: 0)
        setsockopt(self.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        Glibc.close(self.fd)
    }

    /// Makes the close at deinit send a reset instead of a FIN, as a client that aborts does. This end then keeps
    /// no TIME_WAIT entry, so a test can open thousands of connections without running short of ephemeral ports.
    public func resetOnClose() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(self.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
    }

    /// Shuts down this end's sending side, as a client that has sent everything does; reading goes on.
    public func finishSending() {
        Glibc.shutdown(self.fd, Int32(SHUT_WR))
    }

    public func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let count = bytes[offset...].withUnsafeBytes { Glibc.send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count <= 0 { return }
            offset += count
        }
    }

    public func send(_ text: String) {
        self.send(Array(text.utf8))
    }

    /// Sends a request with a `Content-Length` body.
    public func request(
        _ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8] = []
    ) -> Response? {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers {
            head += "\(name): \(value)\r\n"
        }
        if !body.isEmpty || method == "POST" {
            head += "Content-Length: \(body.count)\r\n"
        }
        self.send(Array((head + "\r\n").utf8) + body)
        return self.readResponse()
    }

    /// Reads one response; nil if the connection closed or timed out first. A response to HEAD has no body
    /// whatever its Content-Length says, so pass `hasBody: false` for one.
    public func readResponse(hasBody: Bool = true) -> Response? {
        while true {
            if let response = self.parseBufferedResponse(hasBody: hasBody) {
                return response
            }
            guard self.fill() else { return nil }
        }
    }

    /// Whether the server closed the connection (reads return end of stream) within the read timeout.
    public func isClosedByServer() -> Bool {
        while true {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { Glibc.recv(self.fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { return true }
            if count < 0 { return errno == ECONNRESET }
        }
    }

    /// Returns whether the server has sent nothing and kept the connection open, checking without blocking.
    public func isOpenAndSilent() -> Bool {
        guard self.received.isEmpty else { return false }
        var byte: UInt8 = 0
        let count = Glibc.recv(self.fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
        return count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
    }

    /// Waits up to `timeoutMs` for the server to send bytes or close, and returns whether it did.
    public func waitForInput(timeoutMs: Int32) -> Bool {
        if !self.received.isEmpty {
            return true
        }
        var descriptor = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
        return Glibc.poll(&descriptor, 1, timeoutMs) > 0
    }

    private func fill() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let count = buffer.withUnsafeMutableBytes { Glibc.recv(self.fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return false }
        self.received.append(contentsOf: buffer[0..<count])
        return true
    }

    private func parseBufferedResponse(hasBody: Bool) -> Response? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = self.received.firstRange(of: separator) else { return nil }
        let headText = String(decoding: self.received[..<end.lowerBound], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { return nil }
        let headers = lines.compactMap { line -> (name: String, value: String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        let declared = headers.first { $0.name.lowercased() == "content-length" }.flatMap { Int($0.value) } ?? 0
        let length = hasBody ? declared : 0
        let bodyStart = end.upperBound
        // An interim 1xx response has no body and is returned like any other.
        guard self.received.count - bodyStart >= length else { return nil }
        let body = Array(self.received[bodyStart..<(bodyStart + length)])
        self.received.removeFirst(bodyStart + length)
        return Response(status: status, headers: headers, body: body)
    }
}
