import PortoutCore

#if canImport(Glibc)
    import Glibc
#endif

/// A response that the load generator cannot read as HTTP/1.1 with a `Content-Length` body.
struct ResponseError: Error, CustomStringConvertible {
    let description: String
}

/// A blocking HTTP/1.1 client connection to a loopback IPv4 address, for one request at a time.
///
/// `@unchecked Sendable` because each connection is created on the main thread and then used only by the one
/// worker thread it is handed to.
final class LoadConnection: @unchecked Sendable {
    private let descriptor: Int32
    private var buffer: [UInt8] = Array(repeating: 0, count: 4096)
    /// Bytes of `buffer` received but not yet consumed by `readResponse`.
    private var filled = 0
    /// Set when the server sent `Connection: close`, so the caller must open a new connection.
    private(set) var isClosedByServer = false

    /// Connects to `address` (network byte order) and `port`, with `timeoutMs` for each send and receive.
    init(address: in_addr, port: UInt16, timeoutMs: Int) throws {
        let descriptor = try systemCall("socket") { socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0) }
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = port.bigEndian
        socketAddress.sin_addr = address
        do {
            _ = try systemCall("connect") {
                withUnsafePointer(to: &socketAddress) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
            }
            var noDelay: Int32 = 1
            _ = try systemCall("setsockopt(TCP_NODELAY)") {
                setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
            }
            var timeout = timeval(tv_sec: timeoutMs / 1000, tv_usec: (timeoutMs % 1000) * 1000)
            for (name, option) in [("SO_RCVTIMEO", SO_RCVTIMEO), ("SO_SNDTIMEO", SO_SNDTIMEO)] {
                _ = try systemCall("setsockopt(\(name))") {
                    setsockopt(descriptor, SOL_SOCKET, option, &timeout, socklen_t(MemoryLayout<timeval>.size))
                }
            }
        } catch {
            close(descriptor)
            throw error
        }
        self.descriptor = descriptor
    }

    deinit {
        close(self.descriptor)
    }

    /// Writes all of `bytes`. A send timeout surfaces as `SystemError` with `EAGAIN`.
    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = try bytes[offset...].withUnsafeBytes { chunk in
                try systemCall("send") {
                    Glibc.send(self.descriptor, chunk.baseAddress, chunk.count, Int32(MSG_NOSIGNAL))
                }
            }
            offset += written
        }
    }

    /// Reads one response and returns its status code.
    ///
    /// Only `Content-Length` bodies are supported, since every server the benchmark loads sends one. A receive
    /// timeout surfaces as `SystemError` with `EAGAIN`.
    func readResponse() throws -> Int {
        var headerEnd = self.findHeaderEnd(from: 0)
        while headerEnd == nil {
            let searchFrom = max(0, self.filled - 3)
            try self.receiveMore()
            headerEnd = self.findHeaderEnd(from: searchFrom)
        }
        let head = String(decoding: self.buffer[0..<headerEnd!], as: UTF8.self)
        let (status, contentLength, closes) = try Self.parseHead(head)
        let total = headerEnd! + 4 + contentLength
        while self.filled < total {
            try self.receiveMore()
        }
        // Without pipelining nothing should follow the body, but any bytes that do are kept for the next read.
        let leftover = self.filled - total
        if leftover > 0 {
            self.buffer.withUnsafeMutableBytes { storage in
                _ = memmove(storage.baseAddress!, storage.baseAddress! + total, leftover)
            }
        }
        self.filled = leftover
        self.isClosedByServer = closes
        return status
    }

    private func receiveMore() throws {
        if self.filled == self.buffer.count {
            self.buffer.append(contentsOf: repeatElement(0, count: self.buffer.count))
        }
        let received = try self.buffer.withUnsafeMutableBytes { storage in
            try systemCall("recv") {
                recv(self.descriptor, storage.baseAddress! + self.filled, storage.count - self.filled, 0)
            }
        }
        if received == 0 {
            throw ResponseError(description: "the server closed the connection before the response was complete")
        }
        self.filled += received
    }

    /// Returns the index of the `\r\n\r\n` that ends the header, searching from `start`.
    private func findHeaderEnd(from start: Int) -> Int? {
        guard self.filled >= 4 else { return nil }
        var index = start
        while index + 3 < self.filled {
            if self.buffer[index] == 13 && self.buffer[index + 1] == 10 && self.buffer[index + 2] == 13
                && self.buffer[index + 3] == 10
            {
                return index
            }
            index += 1
        }
        return nil
    }

    /// Parses the status line and the header fields the generator needs.
    static func parseHead(_ head: String) throws -> (status: Int, contentLength: Int, closes: Bool) {
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            throw ResponseError(description: "invalid status line \"\(lines.first ?? "")\"")
        }
        var contentLength: Int?
        var closes = false
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingBlanks()
            if name == "content-length" {
                contentLength = Int(value)
            } else if name == "connection" {
                closes = value.lowercased() == "close"
            } else if name == "transfer-encoding" {
                throw ResponseError(description: "status \(status) response uses Transfer-Encoding \(value)")
            }
        }
        guard let contentLength, contentLength >= 0 else {
            throw ResponseError(description: "status \(status) response has no valid Content-Length")
        }
        return (status, contentLength, closes)
    }
}

extension Substring {
    /// Returns the text without leading and trailing spaces and tabs.
    fileprivate func trimmingBlanks() -> Substring {
        var text = self
        while text.first == " " || text.first == "\t" { text = text.dropFirst() }
        while text.last == " " || text.last == "\t" { text = text.dropLast() }
        return text
    }
}
