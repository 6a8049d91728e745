extension ConfigReader {
    static let tenantKeys: Set<String> = [
        "id", "projects", "verify", "acceptTypes", "destinations", "apiKeys", "upstream",
    ]
    static let upstreamKeys: Set<String> = ["baseUrl", "apiKey", "timeoutMs"]
    static let verifyKeys: Set<String> = ["scheme", "secrets", "toleranceSeconds", "header"]
    static let destinationKeys: Set<String> = retryKeys.union([
        "id", "url", "secret", "previousSecrets", "statuses", "types", "headers", "timeoutMs", "concurrency", "deliverStale",
        "breakerThreshold", "rateLimit",
    ])
    /// Headers the relay sets itself on every delivery, which a destination's `headers` may not replace.
    static let reservedHeaders: Set<String> = [
        "content-type", "content-length", "host", "user-agent", "transfer-encoding", "connection",
        "webhook-id", "webhook-timestamp", "webhook-signature",
    ]

    /// Checks that an identifier is safe in a URL path segment and a log field.
    mutating func checkIdentifier(_ id: String, _ path: String) {
        let allowed = id.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "-")
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
        if !allowed || id.utf8.count > 64 {
            self.fail(path, "must be 1 to 64 characters from A-Z, a-z, 0-9, '.', '-' and '_', not \"\(id)\"")
        }
    }

    mutating func tenant(
        _ object: JSONObject, _ path: String, defaults: DeliveryDefaults, baseDirectory: String
    ) -> TenantConfig? {
        self.rejectUnknownKeys(object, path, known: Self.tenantKeys)
        let id = self.requiredString(object, "id", path)
        if let id {
            self.checkIdentifier(id, "\(path).id")
        }
        let projects = self.stringArray(object, "projects", path)
        if projects == nil {
            self.fail("\(path).projects", "is required")
        } else if projects?.isEmpty == true {
            self.fail("\(path).projects", "must list at least one project")
        }
        let verify = self.verify(object["verify"], "\(path).verify", baseDirectory: baseDirectory)
        let acceptTypes = self.stringArray(object, "acceptTypes", path) ?? []
        var apiKeys: [Secret] = []
        if let keys = object["apiKeys"] {
            if let array = keys.arrayValue {
                for (index, key) in array.enumerated() {
                    if let secret = self.bearerToken(key, "\(path).apiKeys[\(index)]", baseDirectory: baseDirectory) {
                        apiKeys.append(secret)
                    }
                }
            } else {
                self.fail("\(path).apiKeys", "must be an array of secrets")
            }
        }

        var destinations: [DestinationConfig] = []
        // Read from the raw objects, so that a duplicate is named even when either copy has other problems.
        var destinationIDs: Set<String> = []
        for (destinationObject, destinationPath) in self.objectArray(object, "destinations", path) {
            if case .string(let id)? = destinationObject["id"], !destinationIDs.insert(id).inserted {
                self.fail("\(destinationPath).id", "duplicates destination id \"\(id)\" in this tenant")
            }
            self.checkTypeFilter(destinationObject, destinationPath, acceptTypes: acceptTypes)
            guard
                let destination = self.destination(
                    destinationObject, destinationPath, defaults: defaults, baseDirectory: baseDirectory)
            else { continue }
            destinations.append(destination)
        }
        var upstream: UpstreamConfig?
        if let value = object["upstream"] {
            upstream = self.upstream(value, "\(path).upstream", baseDirectory: baseDirectory)
        }
        guard let id, let projects, let verify else { return nil }
        return TenantConfig(
            id: id, projects: projects, verify: verify, acceptTypes: Set(acceptTypes), destinations: destinations,
            apiKeys: apiKeys, upstream: upstream)
    }

    /// Refuses a `types` entry that the tenant never accepts, since that destination would silently receive none
    /// of those events.
    private mutating func checkTypeFilter(_ destination: JSONObject, _ path: String, acceptTypes: [String]) {
        guard let types = destination["types"]?.arrayValue else { return }
        for (index, element) in types.enumerated() {
            guard case .string(let type) = element else { continue }
            let accepted = PortOutStatus.byEventType[type] != nil || type == CarrierEventType.credentialsIssued
                || acceptTypes.contains(type)
            if !accepted {
                self.fail(
                    "\(path).types[\(index)]",
                    "names \"\(type)\", which this tenant does not accept: add it to the tenant's acceptTypes or remove it")
            }
        }
    }

    mutating func upstream(_ value: JSONValue, _ path: String, baseDirectory: String) -> UpstreamConfig? {
        guard let object = self.object(value, path) else { return nil }
        self.rejectUnknownKeys(object, path, known: Self.upstreamKeys)
        var baseURL = self.requiredString(object, "baseUrl", path)
        if let url = baseURL {
            self.checkHTTPURL(url, "\(path).baseUrl", example: "https://api.carrier.example", isBase: true)
        }
        while baseURL?.hasSuffix("/") == true {
            baseURL?.removeLast()
        }
        var apiKey: Secret?
        if let keyValue = object["apiKey"] {
            apiKey = self.secret(keyValue, "\(path).apiKey", baseDirectory: baseDirectory)
        } else {
            self.fail("\(path).apiKey", "is required")
        }
        let timeoutMs = self.integer(object, "timeoutMs", path, default: 10_000, range: 100...120_000)
        guard let baseURL, let apiKey else { return nil }
        return UpstreamConfig(baseURL: baseURL, apiKey: apiKey, timeoutMs: timeoutMs)
    }

    mutating func verify(_ value: JSONValue?, _ path: String, baseDirectory: String) -> VerifyConfig? {
        guard let value else {
            self.fail(path, "is required")
            return nil
        }
        guard let object = self.object(value, path) else { return nil }
        self.rejectUnknownKeys(object, path, known: Self.verifyKeys)

        var scheme = SignatureScheme.standardWebhooks
        if let text = self.optionalString(object, "scheme", path) {
            if let parsed = SignatureScheme(rawValue: text) {
                scheme = parsed
            } else {
                let names = SignatureScheme.allCases.map(\.rawValue).joined(separator: ", ")
                self.fail("\(path).scheme", "must be one of \(names), not \"\(text)\"")
            }
        }
        var secrets: [Secret] = []
        if let secretsValue = object["secrets"], let elements = secretsValue.arrayValue, !elements.isEmpty {
            for (index, element) in elements.enumerated() {
                let secretPath = "\(path).secrets[\(index)]"
                guard let secret = self.secret(element, secretPath, baseDirectory: baseDirectory) else { continue }
                if scheme == .standardWebhooks && !secret.isStandardWebhooksSecret {
                    self.fail(secretPath, "must be \"whsec_\" followed by base64 for the standard-webhooks scheme")
                }
                secrets.append(secret)
            }
        } else {
            self.fail("\(path).secrets", "must be a non-empty array of secrets")
        }
        let tolerance = self.integer(object, "toleranceSeconds", path, default: 300, range: 1...86_400)
        let header = self.optionalString(object, "header", path)
        if scheme != .standardWebhooks && header == nil {
            self.fail("\(path).header", "is required for the \(scheme.rawValue) scheme")
        }
        // Settings a scheme does not read are rejected, so that a file never seems to set what it does not.
        if scheme == .standardWebhooks && header != nil {
            self.fail("\(path).header", "is not used by the standard-webhooks scheme, which reads the webhook-* or svix-* headers")
        }
        if scheme == .hex && object["toleranceSeconds"] != nil {
            self.fail("\(path).toleranceSeconds", "is not used by the hex scheme, which signs no timestamp")
        }
        return VerifyConfig(
            scheme: scheme, secrets: secrets, toleranceSeconds: tolerance, header: header?.lowercased() ?? "")
    }

    mutating func destination(
        _ object: JSONObject, _ path: String, defaults: DeliveryDefaults, baseDirectory: String
    ) -> DestinationConfig? {
        self.rejectUnknownKeys(object, path, known: Self.destinationKeys)
        let id = self.requiredString(object, "id", path)
        if let id {
            self.checkIdentifier(id, "\(path).id")
        }
        let url = self.requiredString(object, "url", path)
        if let url {
            self.checkHTTPURL(url, "\(path).url", example: "https://billing.internal/port-outs")
        }
        var secret: Secret?
        if let secretValue = object["secret"] {
            secret = self.secret(secretValue, "\(path).secret", baseDirectory: baseDirectory)
            if let value = secret, !value.isStandardWebhooksSecret {
                self.fail("\(path).secret", "must be \"whsec_\" followed by base64")
            }
        } else {
            self.fail("\(path).secret", "is required")
        }
        let previousSecrets = self.previousSecrets(object, path, baseDirectory: baseDirectory)
        let statuses = self.statusFilter(object, path)
        let types = self.stringArray(object, "types", path).map(Set.init)
        let headers = self.headers(object["headers"], "\(path).headers")
        let timeoutMs = self.integer(object, "timeoutMs", path, default: defaults.timeoutMs, range: 100...600_000)
        let concurrency = self.integer(object, "concurrency", path, default: defaults.concurrency, range: 1...1024)
        let retry = self.retryPolicy(object, path, inherited: defaults.retry)
        let deliverStale = self.bool(object, "deliverStale", path, default: false)
        let breakerThreshold = self.integer(
            object, "breakerThreshold", path, default: defaults.breakerThreshold, range: 1...10_000)
        var rateLimit: Double?
        if object["rateLimit"] != nil {
            rateLimit = self.number(object, "rateLimit", path, default: 1, range: 0.001...100_000)
        }
        guard let id, let url, let secret else { return nil }
        return DestinationConfig(
            id: id, url: url, secret: secret, previousSecrets: previousSecrets, statuses: statuses, types: types, headers: headers,
            timeoutMs: timeoutMs, concurrency: concurrency, retry: retry, deliverStale: deliverStale,
            breakerThreshold: breakerThreshold, rateLimit: rateLimit)
    }

    /// Reads the optional `previousSecrets` of an outbound endpoint: up to 8 `whsec_` secrets.
    mutating func previousSecrets(_ object: JSONObject, _ path: String, baseDirectory: String) -> [Secret] {
        guard let value = object["previousSecrets"] else { return [] }
        guard let elements = value.arrayValue, elements.count <= 8 else {
            self.fail("\(path).previousSecrets", "must be an array of at most 8 secrets")
            return []
        }
        var secrets: [Secret] = []
        for (index, element) in elements.enumerated() {
            let elementPath = "\(path).previousSecrets[\(index)]"
            guard let secret = self.secret(element, elementPath, baseDirectory: baseDirectory) else { continue }
            if !secret.isStandardWebhooksSecret {
                self.fail(elementPath, "must be \"whsec_\" followed by base64")
            }
            secrets.append(secret)
        }
        return secrets
    }

    mutating func statusFilter(_ object: JSONObject, _ path: String) -> Set<PortOutStatus>? {
        guard let names = self.stringArray(object, "statuses", path) else { return nil }
        var statuses = Set<PortOutStatus>()
        for (index, name) in names.enumerated() {
            if let status = PortOutStatus(rawValue: name) {
                statuses.insert(status)
            } else {
                let allowed = PortOutStatus.allCases.map(\.rawValue).joined(separator: ", ")
                self.fail("\(path).statuses[\(index)]", "must be one of \(allowed), not \"\(name)\"")
            }
        }
        return statuses
    }

    mutating func headers(_ value: JSONValue?, _ path: String) -> [(name: String, value: String)] {
        guard let object = self.object(value, path) else { return [] }
        var headers: [(name: String, value: String)] = []
        for member in object.members {
            let memberPath = "\(path).\(member.key)"
            guard let text = member.value.stringValue else {
                self.fail(memberPath, "must be a string, not \(member.value.typeName)")
                continue
            }
            if !HeaderSyntax.isToken(member.key) {
                self.fail(memberPath, "is not a valid header name")
            } else if Self.reservedHeaders.contains(member.key.lowercased()) {
                self.fail(memberPath, "is set by the relay and cannot be configured")
            } else if !HeaderSyntax.isFieldValue(text) {
                self.fail(memberPath, "contains characters not allowed in a header value")
            } else {
                headers.append((member.key, text))
            }
        }
        return headers
    }
}

/// Character rules of RFC 9110 for header names and values.
public enum HeaderSyntax {
    /// Whether every byte is a `tchar`, and there is at least one.
    public static func isToken(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy(self.isTokenByte)
    }

    /// Inlinable, because the HTTP parser calls it for every byte of every header name.
    @inlinable
    public static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
            UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// Whether the text contains only visible characters, spaces, tabs and non-ASCII bytes (no CR, LF or NUL).
    public static func isFieldValue(_ text: String) -> Bool {
        text.utf8.allSatisfy(self.isFieldValueByte)
    }

    public static func isFieldValueByte(_ byte: UInt8) -> Bool {
        byte == 0x09 || (byte >= 0x20 && byte != 0x7F)
    }
}
