import PortoutCore

/// The settings of `portout-relay emulate`: its projects and keys, its lifecycle delays, where it sends webhooks,
/// the faults it injects into them, and the optional load it generates.
public struct EmulatorSettings: Sendable {
    public struct Project: Sendable {
        public var id: String
        /// Only United Kingdom projects allow `cancelOnly` port outs.
        public var isUnitedKingdom: Bool
    }

    public struct APIKey: Sendable {
        public var key: String
        /// Whether the key may read credentials (403 otherwise).
        public var mayReadCredentials: Bool
    }

    public var listen = ListenAddress(host: "127.0.0.1", port: 8070)
    public var projects: [Project] = [Project(id: "acme-mobile", isUnitedKingdom: false)]
    public var apiKeys: [APIKey] = []
    public var webhookURLs: [String] = []
    /// The secret webhooks are signed with: `whsec_` for Standard Webhooks, any text for the hex schemes.
    public var webhookSecret = ""
    /// The webhook signature scheme, and the signature header of the hex schemes.
    public var webhookScheme = SignatureScheme.standardWebhooks
    public var webhookSignatureHeader = "X-Signature"
    /// Seconds from creation to `processing`, and from creation to `issued`.
    public var processingAfterSeconds = 1.0
    public var issuedAfterSeconds = 2.0
    /// Chances, per webhook, of sending it twice with the same id, of sending it again under a new id, and of
    /// holding it back so that the next status overtakes it.
    public var retryRate = 0.0
    public var resendRate = 0.0
    public var reorderRate = 0.0
    /// Attempts per webhook; non-2xx responses and connection errors are retried with doubling delays from 1 s.
    public var maxWebhookAttempts = 6
    /// Port outs to create on their own at `rate` per second, each then driven to a terminal status.
    public var generatedPortOuts = 0
    public var rate = 10.0
    /// Seconds from `issued` to the terminal status of a generated port out.
    public var finishAfterSeconds = 1.0
    public var seed: UInt64?

    public init() {}

    /// Parses `name[:uk]` entries; nil if an entry has no name or an unknown suffix.
    static func parseProjects(_ text: String) -> [Project]? {
        var projects: [Project] = []
        for entry in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = entry.split(separator: ":", omittingEmptySubsequences: false)
            guard let name = parts.first, !name.isEmpty, parts.count <= 2, parts.count == 1 || parts[1] == "uk" else {
                return nil
            }
            projects.append(Project(id: String(name), isUnitedKingdom: parts.count == 2))
        }
        return projects
    }

    /// Parses `key[:credentials]` entries; nil if an entry has no key or an unknown suffix.
    static func parseAPIKeys(_ text: String) -> [APIKey]? {
        var keys: [APIKey] = []
        for entry in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = entry.split(separator: ":", omittingEmptySubsequences: false)
            guard let key = parts.first, !key.isEmpty, parts.count <= 2, parts.count == 1 || parts[1] == "credentials"
            else { return nil }
            keys.append(APIKey(key: String(key), mayReadCredentials: parts.count == 2))
        }
        return keys
    }
}
