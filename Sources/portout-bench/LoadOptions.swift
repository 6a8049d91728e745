#if canImport(Glibc)
    import Glibc
#endif

/// The settings of `portout-bench load`.
struct LoadOptions {
    var address: in_addr
    var port: UInt16
    /// The `Host` header value, `127.0.0.1:PORT`.
    var authority: String
    var eventsPath: String
    /// Replaces the path column of the events file when set.
    var path: String?
    /// Requests per second over all connections.
    var rate: Int
    var warmupSeconds: Int
    var durationSeconds: Int
    var connections: Int
    var timeoutMs: Int

    /// Requests sent in the warm-up and the measured part together.
    var totalRequests: Int { self.rate * (self.warmupSeconds + self.durationSeconds) }
    /// Requests sent in the warm-up, whose latencies are not recorded.
    var warmupRequests: Int { self.rate * self.warmupSeconds }

    init(_ arguments: [String]) throws {
        guard let url = option("--url", in: arguments) else { throw UsageError("--url is required") }
        guard let events = option("--events", in: arguments) else { throw UsageError("--events is required") }
        (self.address, self.port) = try Self.parseLoopbackURL(url)
        self.authority = String(url.dropFirst("http://".count))
        self.eventsPath = events
        self.path = option("--path", in: arguments)
        if let path = self.path, !path.hasPrefix("/") {
            throw UsageError("--path must start with \"/\", not \"\(path)\"")
        }
        self.rate = try integerOption("--rate", in: arguments, range: 1...1_000_000)
        self.durationSeconds = try integerOption("--duration", in: arguments, range: 1...3600)
        self.warmupSeconds = try integerOption("--warmup", in: arguments, range: 0...600, default: 1)
        self.connections = try integerOption("--connections", in: arguments, range: 1...1024, default: 16)
        self.timeoutMs = try integerOption("--timeout-ms", in: arguments, range: 1...600_000, default: 5000)
    }

    /// Parses `http://127.x.y.z:PORT`. Only loopback addresses are accepted, so the generator cannot be aimed at
    /// another host by mistake.
    static func parseLoopbackURL(_ url: String) throws -> (in_addr, UInt16) {
        guard url.hasPrefix("http://") else {
            throw UsageError("--url must be http://127.0.0.1:PORT with no path, not \"\(url)\"")
        }
        let authority = url.dropFirst("http://".count)
        let parts = authority.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = UInt16(parts[1]), port > 0 else {
            throw UsageError("--url must be http://127.0.0.1:PORT with no path, not \"\(url)\"")
        }
        var address = in_addr()
        guard inet_pton(AF_INET, String(parts[0]), &address) == 1, parts[0].hasPrefix("127.") else {
            throw UsageError("--url must name a loopback IPv4 address (127.0.0.0/8), not \"\(parts[0])\"")
        }
        return (address, port)
    }
}
