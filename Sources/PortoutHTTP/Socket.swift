import PortoutCore
import CLinuxShim
#if canImport(Glibc)
import Glibc
#endif

/// Thin wrappers over the socket calls the server uses; every descriptor they return is non-blocking and
/// close-on-exec.
public enum Socket {
    /// Opens a listening TCP socket with SO_REUSEADDR and SO_REUSEPORT, so that each event loop can hold its own
    /// socket on the same port and the kernel spreads connections across them.
    public static func listen(host: String, port: Int, backlog: Int32 = 1024) throws(SystemError) -> Int32 {
        var storage = sockaddr_storage()
        let length = try self.fillAddress(&storage, host: host, port: port)
        let family = Int32(storage.ss_family)
        let fd = try systemCall("socket") { socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            try self.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            try self.setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1)
            _ = try withUnsafePointer(to: &storage) { pointer throws(SystemError) -> Int32 in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(SystemError) -> Int32 in
                    try systemCall("bind \(host):\(port)") { bind(fd, address, length) }
                }
            }
            _ = try systemCall("listen") { Glibc.listen(fd, backlog) }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    /// Fails with EADDRINUSE if any socket already listens on the address, SO_REUSEPORT or not.
    ///
    /// SO_REUSEPORT lets a second process of the same user bind the same port and silently take half of the
    /// connections, so the server checks first with a plain bind, which an existing listener makes fail.
    public static func checkAvailable(host: String, port: Int) throws(SystemError) {
        var storage = sockaddr_storage()
        let length = try self.fillAddress(&storage, host: host, port: port)
        let fd = try systemCall("socket") { socket(Int32(storage.ss_family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        defer { Glibc.close(fd) }
        try self.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
        _ = try withUnsafePointer(to: &storage) { pointer throws(SystemError) -> Int32 in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(SystemError) -> Int32 in
                try systemCall("bind \(host):\(port)") { bind(fd, address, length) }
            }
        }
    }

    /// Returns the port a socket is bound to, for listeners opened on port 0.
    public static func localPort(_ fd: Int32) throws(SystemError) -> Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try withUnsafeMutablePointer(to: &storage) { pointer throws(SystemError) -> Int32 in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(SystemError) -> Int32 in
                try systemCall("getsockname") { getsockname(fd, address, &length) }
            }
        }
        return self.port(of: storage)
    }

    /// Accepts one connection, or returns `.wouldBlock` when none is waiting. `peer` is `host:port` for logs, and
    /// `client` the address that `maxConnectionsPerClient` counts by.
    public static func accept(_ listener: Int32) throws(SystemError) -> IOResult<(fd: Int32, peer: String, client: String)> {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = try withUnsafeMutablePointer(to: &storage) { pointer throws(SystemError) -> IOResult<Int32> in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(SystemError) -> IOResult<Int32> in
                try nonBlockingCall("accept4") {
                    portout_accept4(listener, address, &length, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
                }
            }
        }
        guard case .done(let fd) = result else { return .wouldBlock }
        return .done((fd, self.describe(storage), self.clientAddress(storage)))
    }

    /// Returns the peer's IPv4 address, or the /64 network of its IPv6 address, since one IPv6 host is often given a
    /// whole /64 and could otherwise open connections from as many addresses as it likes. IPv4 clients of a
    /// dual-stack listener arrive as IPv4-mapped addresses and keep their whole address.
    static func clientAddress(_ storage: sockaddr_storage) -> String {
        var copy = storage
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        return withUnsafePointer(to: &copy) { pointer -> String in
            if Int32(storage.ss_family) == AF_INET6 {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address -> String in
                    var raw = address.pointee.sin6_addr
                    let isMapped = withUnsafeBytes(of: raw) { bytes in
                        bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
                    }
                    if !isMapped {
                        withUnsafeMutableBytes(of: &raw) { bytes in
                            for index in 8..<16 { bytes[index] = 0 }
                        }
                    }
                    inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count))
                    return String(nulTerminated: text) + (isMapped ? "" : "/64")
                }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address -> String in
                var raw = address.pointee.sin_addr
                inet_ntop(AF_INET, &raw, &text, socklen_t(text.count))
                return String(nulTerminated: text)
            }
        }
    }

    /// Opens a blocking TCP connection, from `sourceHost` if given; for tests and command-line clients, not the
    /// event loop.
    public static func connect(host: String, port: Int, sourceHost: String? = nil) throws(SystemError) -> Int32 {
        var storage = sockaddr_storage()
        let length = try self.fillAddress(&storage, host: host, port: port)
        let fd = try systemCall("socket") { socket(Int32(storage.ss_family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            if let sourceHost {
                var source = sockaddr_storage()
                let sourceLength = try self.fillAddress(&source, host: sourceHost, port: 0)
                _ = try withUnsafePointer(to: &source) { pointer throws(SystemError) -> Int32 in
                    try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(SystemError) -> Int32 in
                        try systemCall("bind \(sourceHost)") { Glibc.bind(fd, address, sourceLength) }
                    }
                }
            }
            _ = try withUnsafePointer(to: &storage) { pointer throws(SystemError) -> Int32 in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(SystemError) -> Int32 in
                    try systemCall("connect \(host):\(port)") { Glibc.connect(fd, address, length) }
                }
            }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    public static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws(SystemError) {
        var option = value
        _ = try systemCall("setsockopt") {
            setsockopt(fd, level, name, &option, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    public static func setNoDelay(_ fd: Int32) {
        try? self.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
    }

    /// Reads into `buffer`, returning the byte count (0 at end of stream).
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult<Int> {
        try nonBlockingCall("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    public static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(SystemError) -> IOResult<Int> {
        try nonBlockingCall("write") { Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }
    }

    public static func shutdownWrite(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    public static func close(_ fd: Int32) {
        // close(2) must not be retried on EINTR on Linux: the descriptor is released either way.
        _ = Glibc.close(fd)
    }

    static func fillAddress(_ storage: inout sockaddr_storage, host: String, port: Int) throws(SystemError) -> socklen_t {
        if host.contains(":") {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = in_port_t(UInt16(port).bigEndian)
            guard inet_pton(AF_INET6, host, &address.sin6_addr) == 1 else {
                throw SystemError(operation: "parse IPv6 address \(host)", errno: EINVAL)
            }
            withUnsafeMutablePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee = address }
            }
            return socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let resolvedHost = host == "localhost" ? "127.0.0.1" : host
        guard inet_pton(AF_INET, resolvedHost, &address.sin_addr) == 1 else {
            throw SystemError(operation: "parse IPv4 address \(host)", errno: EINVAL)
        }
        withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee = address }
        }
        return socklen_t(MemoryLayout<sockaddr_in>.size)
    }

    private static func port(of storage: sockaddr_storage) -> Int {
        var copy = storage
        return withUnsafePointer(to: &copy) { pointer in
            if Int32(storage.ss_family) == AF_INET6 {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    /// Formats a peer address as `host:port` for logs.
    private static func describe(_ storage: sockaddr_storage) -> String {
        var copy = storage
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let port = self.port(of: storage)
        return withUnsafePointer(to: &copy) { pointer -> String in
            if Int32(storage.ss_family) == AF_INET6 {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address -> String in
                    var raw = address.pointee.sin6_addr
                    inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count))
                    return "[\(String(nulTerminated: text))]:\(port)"
                }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address -> String in
                var raw = address.pointee.sin_addr
                inet_ntop(AF_INET, &raw, &text, socklen_t(text.count))
                return "\(String(nulTerminated: text)):\(port)"
            }
        }
    }
}

extension String {
    /// Decodes a NUL-terminated C character buffer as UTF-8.
    init(nulTerminated characters: [CChar]) {
        self.init(decoding: characters.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
