#if canImport(Glibc)
import Glibc
#endif

/// A sender of the messages that tell systemd a unit of `Type=notify` is ready or stopping: datagrams to the
/// socket that `NOTIFY_SOCKET` names, in the format of sd_notify(3). Without that variable, as outside systemd,
/// it sends nothing.
public struct ServiceNotifier: Sendable {
    /// The socket's path, or its name in the abstract namespace after a leading "@".
    public let socketPath: String?

    public init(environment: [String: String]) {
        self.socketPath = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Sends `state`, such as "READY=1". Does nothing without a socket.
    public func send(_ state: String) throws(SystemError) {
        guard let socketPath else { return }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var name = Array(socketPath.utf8)
        let isAbstract = name.first == UInt8(ascii: "@")
        if isAbstract {
            // An abstract socket's name starts with a zero byte where the path would start, and needs no zero
            // byte at the end, which a path does.
            name[0] = 0
        }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard name.count < capacity || (isAbstract && name.count == capacity) else {
            throw SystemError(operation: "using a NOTIFY_SOCKET name of \(name.count) bytes", errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            path.copyBytes(from: name)
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + name.count)
        let descriptor = try systemCall("socket") { socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        defer { close(descriptor) }
        let message = Array(state.utf8)
        _ = try systemCall("sendto NOTIFY_SOCKET") {
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                    // Not waiting, so that a socket that is never read cannot hold up the start or the stop.
                    sendto(descriptor, message, message.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT), socketAddress, length)
                }
            }
        }
    }
}
