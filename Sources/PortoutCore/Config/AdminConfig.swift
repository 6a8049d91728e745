/// The admin listener: metrics, destination control and the other operator endpoints.
public struct AdminConfig: Sendable {
    public var listen = ListenAddress(host: "127.0.0.1", port: 9090)
    /// Bearer token every admin request must carry; without one, the listener must be on loopback.
    public var token: Secret?
    /// The maximum number of replays and redeliveries unfinished at once. Each can hold up to a million
    /// deliveries in memory while it scans or waits, so this bounds the memory they take.
    public var maxUnfinishedReplays = 8

    public init() {}
}

extension ListenAddress {
    /// Whether the host is a loopback address: 127.0.0.0/8, `::1` or `localhost`.
    public var isLoopback: Bool {
        if self.host == "::1" || self.host == "localhost" {
            return true
        }
        let octets = self.host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}

extension ConfigReader {
    mutating func adminConfig(_ value: JSONValue?, baseDirectory: String) -> AdminConfig {
        var admin = AdminConfig()
        let path = "$.admin"
        guard let object = self.object(value, path) else { return admin }
        self.rejectUnknownKeys(object, path, known: ["listen", "token", "maxUnfinishedReplays"])
        admin.maxUnfinishedReplays = self.integer(
            object, "maxUnfinishedReplays", path, default: admin.maxUnfinishedReplays, range: 1...64)
        if let text = self.optionalString(object, "listen", path) {
            if let parsed = ListenAddress(parsing: text) {
                admin.listen = parsed
            } else {
                self.fail("\(path).listen", "must be host:port, such as 127.0.0.1:9090, not \"\(text)\"")
            }
        }
        if let tokenValue = object["token"] {
            admin.token = self.bearerToken(tokenValue, "\(path).token", baseDirectory: baseDirectory)
        }
        // Admin endpoints pause destinations and replay events, so they are never open beyond this host.
        if admin.token == nil && !admin.listen.isLoopback && object["token"] == nil {
            self.fail(
                "\(path).token",
                "is required when admin.listen (\(admin.listen)) is not a loopback address; set a token or listen on 127.0.0.1")
        }
        return admin
    }
}
