#if canImport(Glibc)
import Glibc
#endif

/// A failed system call, with the operation and errno.
public struct SystemError: Error, Sendable, CustomStringConvertible, Equatable {
    public let operation: String
    public let errno: Int32

    public init(operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String {
        "\(self.operation) failed: \(String(validatingCString: strerror(self.errno)) ?? "unknown error") (errno \(self.errno))"
    }
}

/// The result of a non-blocking call that may have nothing to do yet.
public enum IOResult<Value> {
    case done(Value)
    case wouldBlock
}

/// Runs a system call, retrying on EINTR and turning a -1 return into `SystemError`.
///
/// EBADF and EFAULT mean the caller passed a closed descriptor or a bad pointer, which is a bug here, so they stop
/// the process instead of being reported as I/O errors.
@inline(__always)
public func systemCall<T: FixedWidthInteger>(_ operation: String, _ body: () -> T) throws(SystemError) -> T {
    while true {
        let result = body()
        if result != -1 {
            return result
        }
        let code = errno
        switch code {
        case EINTR:
            continue
        case EBADF, EFAULT:
            preconditionFailure("\(operation) failed with errno \(code): a descriptor or pointer is invalid")
        default:
            throw SystemError(operation: operation, errno: code)
        }
    }
}

/// Like `systemCall`, but returns `.wouldBlock` for EAGAIN on a non-blocking descriptor.
@inline(__always)
public func nonBlockingCall<T: FixedWidthInteger>(
    _ operation: String, _ body: () -> T
) throws(SystemError) -> IOResult<T> {
    do {
        return .done(try systemCall(operation, body))
    } catch where error.errno == EAGAIN || error.errno == EWOULDBLOCK {
        return .wouldBlock
    }
}
