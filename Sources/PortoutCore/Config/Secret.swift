import Foundation

/// A secret resolved from the configuration: given inline, by environment variable or by file.
///
/// `description` names only where the secret came from, so a secret printed by mistake shows no key material.
public struct Secret: Sendable, Equatable, CustomStringConvertible {
    public let value: String
    /// `inline`, `env NAME` or `file PATH`.
    public let source: String

    public init(value: String, source: String) {
        self.value = value
        self.source = source
    }

    public var description: String {
        "secret(\(self.source))"
    }

    public static let standardWebhooksPrefix = "whsec_"

    /// The HMAC key: the base64-decoded bytes after `whsec_`, or the UTF-8 bytes of a secret without that prefix.
    public var keyBytes: [UInt8] {
        if self.value.hasPrefix(Self.standardWebhooksPrefix),
            let data = Data(base64Encoded: String(self.value.dropFirst(Self.standardWebhooksPrefix.count)))
        {
            return Array(data)
        }
        return Array(self.value.utf8)
    }

    /// Whether the value is `whsec_` followed by base64 that decodes to at least one byte.
    public var isStandardWebhooksSecret: Bool {
        guard self.value.hasPrefix(Self.standardWebhooksPrefix) else { return false }
        let encoded = String(self.value.dropFirst(Self.standardWebhooksPrefix.count))
        guard let data = Data(base64Encoded: encoded) else { return false }
        return !data.isEmpty
    }
}

extension ConfigReader {
    /// Reads a secret that clients present as `Authorization: Bearer <token>`, such as a read API key or the
    /// admin token. RFC 6750's token syntax has no white space, and a field value none at either end.
    mutating func bearerToken(_ value: JSONValue, _ path: String, baseDirectory: String) -> Secret? {
        guard let secret = self.secret(value, path, baseDirectory: baseDirectory) else { return nil }
        if secret.value.utf8.count < 16 {
            self.fail(path, "must be at least 16 characters, so it cannot be guessed")
        }
        if secret.value.contains(where: \.isWhitespace) {
            self.fail(path, "must not contain white space, which a Bearer token cannot carry")
        }
        return secret
    }

    /// Reads a secret given as a string, `{"env": NAME}` or `{"file": PATH}`; relative paths start at `baseDirectory`.
    mutating func secret(_ value: JSONValue, _ path: String, baseDirectory: String) -> Secret? {
        if let string = value.stringValue {
            guard !string.isEmpty else {
                self.fail(path, "must not be empty")
                return nil
            }
            return Secret(value: string, source: "inline")
        }
        guard let object = value.objectValue, object.members.count == 1 else {
            self.fail(path, "must be a string, {\"env\": NAME} or {\"file\": PATH}")
            return nil
        }
        if let name = object["env"] {
            guard let name = self.string(name, "\(path).env") else { return nil }
            // Trimmed as a file's contents are, since secret stores often add a line break.
            let resolved = ProcessInfo.processInfo.environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines)
            guard let resolved, !resolved.isEmpty else {
                self.fail(
                    "\(path).env", "environment variable \(name) is not set, or empty once white space is trimmed")
                return nil
            }
            return Secret(value: resolved, source: "env \(name)")
        }
        if let file = object["file"] {
            guard let file = self.string(file, "\(path).file") else { return nil }
            let resolvedPath = file.hasPrefix("/") ? file : "\(baseDirectory)/\(file)"
            let bytes: [UInt8]
            do {
                guard let contents = try DurableFile.read(path: resolvedPath) else {
                    self.fail("\(path).file", "\(resolvedPath) does not exist")
                    return nil
                }
                bytes = contents
            } catch {
                self.fail("\(path).file", "cannot read \(resolvedPath): \(error.description)")
                return nil
            }
            let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !text.isEmpty else {
                self.fail("\(path).file", "\(resolvedPath) is empty")
                return nil
            }
            return Secret(value: text, source: "file \(resolvedPath)")
        }
        self.fail(path, "must be a string, {\"env\": NAME} or {\"file\": PATH}")
        return nil
    }
}
