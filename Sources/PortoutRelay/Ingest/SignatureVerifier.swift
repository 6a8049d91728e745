import PortoutCore
import PortoutCrypto
import PortoutHTTP

/// Checks an inbound request's signature under its tenant's scheme, on the exact body bytes received.
///
/// Every configured secret is tried, so a sender may switch to a new secret at any point of a rotation. Each
/// comparison is constant-time; which secret or which signature entry matched is never reported.
struct SignatureVerifier: Sendable {
    let config: VerifyConfig
    /// Decoded and set up once at start, because `whsec_` secrets are base64 and every request needs them.
    let keys: [HMACKey]

    init(_ config: VerifyConfig) {
        self.config = config
        self.keys = config.secrets.map { HMACKey($0.keyBytes) }
    }

    enum Failure: Error, Equatable {
        case missing(String)
        case malformed(String)
        /// A signature header sent more than once, which a proxy in front could read differently.
        case repeated(String)
        /// A header in both its `webhook-` and `svix-` spellings with different values.
        case conflicting(String, String)
        case timestampOutOfRange(skewSeconds: Int)
        case mismatch

        var apiError: APIError {
            switch self {
            case .missing(let what):
                return .unauthorized(code: "signatureMissing", "The request has no \(what).")
            case .malformed(let what):
                return .unauthorized(code: "signatureInvalid", "The \(what) is malformed.")
            case .repeated(let name):
                return .unauthorized(code: "signatureInvalid", "The request has more than one \(name) header.")
            case .conflicting(let first, let second):
                return .unauthorized(code: "signatureInvalid", "The \(first) and \(second) headers differ.")
            case .timestampOutOfRange(let skew):
                return .unauthorized(
                    code: "timestampOutOfRange",
                    "The signature timestamp is \(abs(skew)) seconds \(skew > 0 ? "ahead of" : "behind") the relay's clock.",
                    hint: "Check the sender's clock (NTP); timestamps more than the tenant's tolerance away are rejected.")
            case .mismatch:
                return .unauthorized(code: "signatureInvalid", "No signature matches the body.")
            }
        }

        /// Short text for the rejection log line, which never carries the signature itself.
        var logReason: String {
            switch self {
            case .missing: return "signature missing"
            case .malformed: return "signature malformed"
            case .repeated: return "signature header repeated"
            case .conflicting: return "signature headers conflict"
            case .timestampOutOfRange: return "timestamp outside tolerance"
            case .mismatch: return "signature mismatch"
            }
        }
    }

    /// Verifies the request; `nowSeconds` is the relay's clock in Unix seconds.
    func verify(headers: HTTPHeaders, body: [UInt8], nowSeconds: Int) -> Result<Void, Failure> {
        switch self.config.scheme {
        case .standardWebhooks: return self.verifyStandardWebhooks(headers, body, nowSeconds)
        case .timestampedHex: return self.verifyTimestampedHex(headers, body, nowSeconds)
        case .hex: return self.verifyHex(headers, body)
        }
    }

    private func verifyStandardWebhooks(_ headers: HTTPHeaders, _ body: [UInt8], _ now: Int) -> Result<Void, Failure> {
        // Some senders send both spellings, which must then agree. Each spelling is looked up once, since this
        // runs for every webhook.
        let idField: HeaderSpelling
        let timestampField: HeaderSpelling
        let signatureField: HeaderSpelling
        switch (
            Self.read(headers, "webhook-id", "svix-id"), Self.read(headers, "webhook-timestamp", "svix-timestamp"),
            Self.read(headers, "webhook-signature", "svix-signature")
        ) {
        case (.failure(let failure), _, _), (_, .failure(let failure), _), (_, _, .failure(let failure)):
            return .failure(failure)
        case (.success(let id), .success(let timestamp), .success(let signature)):
            (idField, timestampField, signatureField) = (id, timestamp, signature)
        }
        guard let (idName, id) = idField, !id.isEmpty else {
            return .failure(.missing("webhook-id header"))
        }
        // The MAC covers the id's bytes as sent, and text read from invalid UTF-8 has other bytes.
        guard headers.hasValidUTF8(idName) else {
            return .failure(.malformed("\(idName) header"))
        }
        guard let (_, timestampText) = timestampField else {
            return .failure(.missing("webhook-timestamp header"))
        }
        guard let (_, signatureText) = signatureField else {
            return .failure(.missing("webhook-signature header"))
        }
        guard let timestamp = Self.unixSeconds(timestampText[...]) else {
            return .failure(.malformed("webhook-timestamp header"))
        }
        if let failure = self.checkTolerance(timestamp, now) {
            return .failure(failure)
        }
        let candidates = Self.standardSignatures(signatureText)
        guard !candidates.isEmpty else { return .failure(.malformed("webhook-signature header")) }
        var matched = false
        for key in self.keys {
            let expected = WebhookSignature.standardWebhooksMAC(key: key, id: id, timestamp: timestampText, body: body)
            for candidate in candidates where ConstantTime.equals(candidate, expected) {
                matched = true
            }
        }
        return matched ? .success(()) : .failure(.mismatch)
    }

    private func verifyTimestampedHex(_ headers: HTTPHeaders, _ body: [UInt8], _ now: Int) -> Result<Void, Failure> {
        let field = headers.lookup(self.config.header)
        guard field.count <= 1 else {
            return .failure(.repeated(self.config.header))
        }
        guard let value = field.value else {
            return .failure(.missing("\(self.config.header) header"))
        }
        var timestampText: Substring?
        var candidates: [[UInt8]] = []
        for part in value.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { continue }
            let name = pair[0].trimmingSpaces()
            if name == "t" {
                // A second t= could be read instead of the first by another parser, as a repeated header could.
                guard timestampText == nil else {
                    return .failure(.malformed("\(self.config.header) header, which has more than one t=,"))
                }
                timestampText = pair[1].trimmingSpaces()
            } else if name == "v1", let bytes = ByteEncoding.decodeHex(pair[1].trimmingSpaces()), bytes.count == 32 {
                // As in the hex scheme, a value that is not 32 bytes cannot be an HMAC-SHA256.
                candidates.append(bytes)
            }
        }
        guard let timestampText, let timestamp = Self.unixSeconds(timestampText) else {
            return .failure(.malformed("\(self.config.header) header's t= timestamp"))
        }
        guard !candidates.isEmpty else { return .failure(.malformed("\(self.config.header) header's v1= signature")) }
        if let failure = self.checkTolerance(timestamp, now) {
            return .failure(failure)
        }
        var matched = false
        for key in self.keys {
            let expected = WebhookSignature.timestamped(key: key, timestamp: timestampText, body: body)
            for candidate in candidates where ConstantTime.equals(candidate, expected) {
                matched = true
            }
        }
        return matched ? .success(()) : .failure(.mismatch)
    }

    private func verifyHex(_ headers: HTTPHeaders, _ body: [UInt8]) -> Result<Void, Failure> {
        let field = headers.lookup(self.config.header)
        guard field.count <= 1 else {
            return .failure(.repeated(self.config.header))
        }
        guard let value = field.value else {
            return .failure(.missing("\(self.config.header) header"))
        }
        var text = value[...]
        if text.hasPrefix("sha256=") {
            text = text.dropFirst("sha256=".count)
        }
        // An HMAC-SHA256 is 32 bytes, so an empty or shorter value is malformed rather than a wrong signature.
        guard let candidate = ByteEncoding.decodeHex(text), candidate.count == 32 else {
            return .failure(.malformed("\(self.config.header) header"))
        }
        var matched = false
        for key in self.keys where ConstantTime.equals(candidate, WebhookSignature.plain(key: key, body: body)) {
            matched = true
        }
        return matched ? .success(()) : .failure(.mismatch)
    }

    /// Decodes the `v1,` entries of a `webhook-signature` value, which are separated by spaces. Entries of other
    /// versions, and `v1,` entries that are not base64, are left out.
    private static func standardSignatures(_ value: String) -> [[UInt8]] {
        var value = value
        return value.withUTF8 { bytes in
            var signatures: [[UInt8]] = []
            var start = 0
            while start < bytes.count {
                let end = bytes[start...].firstIndex(of: UInt8(ascii: " ")) ?? bytes.count
                if end - start >= 3, bytes[start] == UInt8(ascii: "v"), bytes[start + 1] == UInt8(ascii: "1"),
                    bytes[start + 2] == UInt8(ascii: ","),
                    let signature = ByteEncoding.decodeBase64(bytes: UnsafeBufferPointer(rebasing: bytes[(start + 3)..<end]))
                {
                    signatures.append(signature)
                }
                start = end + 1
            }
            return signatures
        }
    }

    /// A header's name as sent, in its `webhook-` or `svix-` spelling, and its value; nil when it is absent.
    private typealias HeaderSpelling = (name: String, value: String)?

    /// Reads a Standard Webhooks header under both spellings. Either may appear once; when both do, their
    /// values must be equal, and the `webhook-` spelling is the one read.
    private static func read(_ headers: HTTPHeaders, _ standard: String, _ svix: String) -> Result<HeaderSpelling, Failure> {
        let standardField = headers.lookup(standard)
        let svixField = headers.lookup(svix)
        if standardField.count > 1 {
            return .failure(.repeated(standard))
        }
        if svixField.count > 1 {
            return .failure(.repeated(svix))
        }
        if let standardValue = standardField.value {
            if let svixValue = svixField.value, svixValue != standardValue {
                return .failure(.conflicting(standard, svix))
            }
            return .success((standard, standardValue))
        }
        return .success(svixField.value.map { (svix, $0) })
    }

    /// Parses a timestamp of Unix seconds written as 1 to 19 ASCII digits. `Int.init` alone would also take a
    /// sign, which no sender writes.
    private static func unixSeconds(_ text: Substring) -> Int? {
        guard (1...19).contains(text.utf8.count), text.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else {
            return nil
        }
        return Int(text)
    }

    private func checkTolerance(_ timestamp: Int, _ now: Int) -> Failure? {
        // Timestamps come from the sender, so the difference may overflow; such a skew is simply out of range.
        let (skew, overflow) = timestamp.subtractingReportingOverflow(now)
        if overflow || skew == Int.min {
            return .timestampOutOfRange(skewSeconds: timestamp < 0 ? -Int.max : Int.max)
        }
        return abs(skew) > self.config.toleranceSeconds ? .timestampOutOfRange(skewSeconds: skew) : nil
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        var text = self
        while text.first == " " { text = text.dropFirst() }
        while text.last == " " { text = text.dropLast() }
        return text
    }
}
