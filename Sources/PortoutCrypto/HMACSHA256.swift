import COpenSSL

/// HMAC-SHA256 through OpenSSL's EVP_MAC interface.
///
/// Thread-safe: every call uses its own `EVP_MAC_CTX`; only the fetched algorithm, which OpenSSL documents as
/// shareable, is common to all threads.
public enum HMACSHA256 {
    public static let byteCount = 32

    /// The HMAC algorithm, fetched once. `EVP_MAC` objects are reference-counted and safe to share between threads.
    nonisolated(unsafe) static let algorithm: OpaquePointer = {
        guard let mac = EVP_MAC_fetch(nil, "HMAC", nil) else {
            fatalError("OpenSSL has no HMAC implementation: \(OpenSSLError.lastErrorText())")
        }
        return mac
    }()

    /// Computes the MAC of the concatenation of `parts` without copying them into one buffer.
    ///
    /// This sets the key up anew on every call; a caller that signs or verifies repeatedly with one key keeps
    /// an `HMACKey` instead.
    public static func authenticate(key: [UInt8], parts: [UnsafeRawBufferPointer]) -> [UInt8] {
        HMACKey(key).authenticate(parts: parts)
    }

    public static func authenticate(key: [UInt8], message: [UInt8]) -> [UInt8] {
        message.withUnsafeBytes { self.authenticate(key: key, parts: [$0]) }
    }
}

/// An HMAC-SHA256 key set up once in an `EVP_MAC_CTX`, so each MAC starts from a copy of that context instead
/// of fetching SHA-256 by name and hashing the padded key again.
///
/// Thread-safety: the template context is written only in `init` and `deinit`. Between them, threads only copy
/// it with `EVP_MAC_CTX_dup`, which reads the source and takes references on the shared digest with atomic
/// counts (OpenSSL 3.0, `hmac_dup` and `EVP_MD_CTX_copy_ex`). That is why the class is `@unchecked Sendable`.
public final class HMACKey: @unchecked Sendable {
    private let template: OpaquePointer

    public init(_ key: [UInt8]) {
        guard let context = EVP_MAC_CTX_new(HMACSHA256.algorithm) else {
            fatalError("EVP_MAC_CTX_new failed: \(OpenSSLError.lastErrorText())")
        }
        // OSSL_PARAM keeps pointers to both strings, so both must outlive EVP_MAC_init. A Swift string passed
        // straight to a C parameter lives only for that one call, which AddressSanitizer caught here.
        let initialised = "digest".withCString { parameterName in
            "SHA256".withCString { digestName -> Int32 in
                var parameters = [
                    OSSL_PARAM_construct_utf8_string(parameterName, UnsafeMutablePointer(mutating: digestName), 0),
                    OSSL_PARAM_construct_end(),
                ]
                // A zero-length key is legal HMAC, but OpenSSL wants a non-null pointer for it.
                let bytes = key.isEmpty ? [0] : key
                return bytes.withUnsafeBufferPointer { keyBuffer in
                    EVP_MAC_init(context, keyBuffer.baseAddress, key.count, &parameters)
                }
            }
        }
        precondition(initialised == 1, "EVP_MAC_init failed: \(OpenSSLError.lastErrorText())")
        self.template = context
    }

    deinit {
        EVP_MAC_CTX_free(self.template)
    }

    /// Computes the MAC of the concatenation of `parts` without copying them into one buffer.
    public func authenticate(parts: [UnsafeRawBufferPointer]) -> [UInt8] {
        guard let context = EVP_MAC_CTX_dup(self.template) else {
            fatalError("EVP_MAC_CTX_dup failed: \(OpenSSLError.lastErrorText())")
        }
        defer { EVP_MAC_CTX_free(context) }
        for part in parts where part.count > 0 {
            let updated = EVP_MAC_update(context, part.baseAddress!.assumingMemoryBound(to: UInt8.self), part.count)
            precondition(updated == 1, "EVP_MAC_update failed: \(OpenSSLError.lastErrorText())")
        }
        var output = [UInt8](repeating: 0, count: HMACSHA256.byteCount)
        var length = 0
        let finished = output.withUnsafeMutableBufferPointer { buffer in
            EVP_MAC_final(context, buffer.baseAddress, &length, buffer.count)
        }
        precondition(
            finished == 1 && length == HMACSHA256.byteCount, "EVP_MAC_final failed: \(OpenSSLError.lastErrorText())")
        return output
    }

    public func authenticate(message: [UInt8]) -> [UInt8] {
        message.withUnsafeBytes { self.authenticate(parts: [$0]) }
    }
}

/// SHA-256 digests through OpenSSL.
public enum SHA256Digest {
    /// The digest, fetched once: OpenSSL's `SHA256()` looks it up by name on every call.
    nonisolated(unsafe) static let algorithm: OpaquePointer = {
        guard let digest = EVP_MD_fetch(nil, "SHA256", nil) else {
            fatalError("OpenSSL has no SHA-256 implementation: \(OpenSSLError.lastErrorText())")
        }
        return digest
    }()

    /// Computes one digest; a caller with several to compute in a row keeps a `SHA256Hasher`.
    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        SHA256Hasher().hash(bytes)
    }
}

/// One `EVP_MD_CTX` reused for several SHA-256 digests, which saves allocating and freeing a context for each.
///
/// Thread-safety: none. Each caller keeps its own, for as long as it has digests to compute in a row.
public final class SHA256Hasher {
    private let context: OpaquePointer

    public init() {
        guard let context = EVP_MD_CTX_new() else {
            fatalError("EVP_MD_CTX_new failed: \(OpenSSLError.lastErrorText())")
        }
        self.context = context
    }

    deinit {
        EVP_MD_CTX_free(self.context)
    }

    public func hash(_ bytes: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let status = bytes.withUnsafeBytes { input in
            output.withUnsafeMutableBufferPointer { buffer -> Int32 in
                guard EVP_DigestInit_ex2(self.context, SHA256Digest.algorithm, nil) == 1 else { return 0 }
                if input.count > 0, EVP_DigestUpdate(self.context, input.baseAddress, input.count) != 1 {
                    return 0
                }
                return EVP_DigestFinal_ex(self.context, buffer.baseAddress, &length)
            }
        }
        precondition(status == 1 && length == 32, "SHA-256 digest failed: \(OpenSSLError.lastErrorText())")
        return output
    }
}

/// Comparison whose running time depends only on the lengths, never on where the inputs first differ.
public enum ConstantTime {
    public static func equals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        guard !lhs.isEmpty else { return true }
        return lhs.withUnsafeBytes { left in
            rhs.withUnsafeBytes { right in
                CRYPTO_memcmp(left.baseAddress, right.baseAddress, left.count) == 0
            }
        }
    }
}

/// Cryptographically secure random bytes from OpenSSL's generator.
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: count)
        let status = output.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        precondition(status == 1, "RAND_bytes failed: \(OpenSSLError.lastErrorText())")
        return output
    }
}

enum OpenSSLError {
    /// Drains OpenSSL's thread-local error queue into one line of text.
    static func lastErrorText() -> String {
        var messages: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            messages.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return messages.isEmpty ? "no OpenSSL error queued" : messages.joined(separator: "; ")
    }
}
