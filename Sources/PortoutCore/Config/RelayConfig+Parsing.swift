import Foundation

extension RelayConfig {
    /// Reads and validates a configuration file, reporting every problem by its JSON path.
    ///
    /// Relative paths inside the file (`dataDir`, secret files) are resolved against the file's directory.
    public static func load(path: String) throws(ConfigError) -> RelayConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot read the file" : "no such file"
            throw ConfigError(file: path, problems: [ConfigProblem(path: "$", message: reason)])
        }
        let absolute = URL(fileURLWithPath: path).standardizedFileURL
        return try self.parse(Array(data), file: path, baseDirectory: absolute.deletingLastPathComponent().path)
    }

    public static func parse(_ bytes: [UInt8], file: String, baseDirectory: String) throws(ConfigError) -> RelayConfig {
        let document: JSONValue
        do {
            document = try JSONParser.parse(bytes)
        } catch {
            throw ConfigError(file: file, problems: [ConfigProblem(path: "$", message: error.description)])
        }
        var reader = ConfigReader()
        let config = reader.relayConfig(document, baseDirectory: baseDirectory)
        guard reader.problems.isEmpty, let config else {
            throw ConfigError(file: file, problems: reader.problems)
        }
        return config
    }
}

extension ConfigReader {
    static let topLevelKeys: Set<String> = [
        "listen", "dataDir", "logLevel", "eventLoops", "limits", "journal", "dedupe", "delivery", "tenants",
        "admin", "shutdownGraceSeconds", "stalledAfterSeconds", "accessLog", "operationalWebhook",
    ]

    mutating func relayConfig(_ document: JSONValue, baseDirectory: String) -> RelayConfig? {
        guard let root = self.object(document, "$") else { return nil }
        self.rejectUnknownKeys(root, "$", known: Self.topLevelKeys)

        var listen = ListenAddress(host: "127.0.0.1", port: 8080)
        if let text = self.optionalString(root, "listen", "$") {
            if let parsed = ListenAddress(parsing: text) {
                listen = parsed
            } else {
                self.fail("$.listen", "must be host:port, such as 127.0.0.1:8080 or [::1]:8080, not \"\(text)\"")
            }
        }
        let dataDirText = self.optionalString(root, "dataDir", "$") ?? "data"
        let dataDir = dataDirText.hasPrefix("/") ? dataDirText : "\(baseDirectory)/\(dataDirText)"

        var logLevel = LogLevel.info
        if let text = self.optionalString(root, "logLevel", "$") {
            if let level = LogLevel(rawValue: text) {
                logLevel = level
            } else {
                self.fail(
                    "$.logLevel",
                    "must be one of \(LogLevel.allCases.map(\.rawValue).joined(separator: ", ")), not \"\(text)\"")
            }
        }
        let eventLoops = self.integer(root, "eventLoops", "$", default: 2, range: 1...64)
        let shutdownGraceSeconds = self.integer(root, "shutdownGraceSeconds", "$", default: 10, range: 0...3600)
        let limits = self.limits(root["limits"])
        let journal = self.journalSettings(root["journal"])
        let dedupe = self.dedupeSettings(root["dedupe"])
        let delivery = self.deliveryDefaults(root["delivery"])
        let admin = self.adminConfig(root["admin"], baseDirectory: baseDirectory)

        if root["tenants"] == nil {
            self.fail("$.tenants", "is required")
        }
        var tenants: [TenantConfig] = []
        for (object, path) in self.objectArray(root, "tenants", "$") {
            if let tenant = self.tenant(object, path, defaults: delivery, baseDirectory: baseDirectory) {
                if tenants.contains(where: { $0.id == tenant.id }) {
                    self.fail("\(path).id", "duplicates tenant id \"\(tenant.id)\"")
                }
                // A read key names one tenant; shared, it would open only the last tenant's projects.
                for (keyIndex, key) in tenant.apiKeys.enumerated()
                where tenants.contains(where: { $0.apiKeys.contains(key) }) {
                    self.fail("\(path).apiKeys[\(keyIndex)]", "is already a key of another tenant")
                }
                tenants.append(tenant)
            }
        }
        var config = RelayConfig(
            listen: listen, dataDir: dataDir, logLevel: logLevel, eventLoops: eventLoops, limits: limits,
            journal: journal, dedupe: dedupe, delivery: delivery, tenants: tenants, admin: admin,
            shutdownGraceSeconds: shutdownGraceSeconds)
        config.stalledAfterSeconds = self.stalledAfterSeconds(root["stalledAfterSeconds"])
        config.accessLog = self.bool(root, "accessLog", "$", default: false)
        if let value = root["operationalWebhook"] {
            config.operationalWebhook = self.operationalWebhook(value, baseDirectory: baseDirectory)
        }
        return config
    }

    mutating func operationalWebhook(_ value: JSONValue, baseDirectory: String) -> OperationalWebhookConfig? {
        let path = "$.operationalWebhook"
        guard let object = self.object(value, path) else { return nil }
        self.rejectUnknownKeys(object, path, known: ["url", "secret", "previousSecrets", "timeoutMs"])
        let url = self.requiredString(object, "url", path)
        if let url {
            self.checkHTTPURL(url, "\(path).url", example: "https://alerts.internal/portout-relay")
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
        let timeoutMs = self.integer(object, "timeoutMs", path, default: 10_000, range: 100...600_000)
        guard let url, let secret else { return nil }
        return OperationalWebhookConfig(url: url, secret: secret, previousSecrets: previousSecrets, timeoutMs: timeoutMs)
    }

    mutating func stalledAfterSeconds(_ value: JSONValue?) -> [PortOutStatus: Int] {
        var thresholds = RelayConfig.defaultStalledAfterSeconds
        let path = "$.stalledAfterSeconds"
        guard let object = self.object(value, path) else { return thresholds }
        let statuses: [PortOutStatus] = [.initiated, .processing, .issued]
        self.rejectUnknownKeys(object, path, known: Set(statuses.map(\.rawValue)))
        for status in statuses {
            thresholds[status] = self.integer(
                object, status.rawValue, path, default: thresholds[status]!, range: 1...31_536_000)
        }
        return thresholds
    }

    mutating func limits(_ value: JSONValue?) -> Limits {
        var limits = Limits()
        guard let object = self.object(value, "$.limits") else { return limits }
        let path = "$.limits"
        self.rejectUnknownKeys(
            object, path,
            known: [
                "maxHeaderBytes", "maxBodyBytes", "maxBufferedRequestBytes", "maxConnections",
                "maxConnectionsPerClient", "headerTimeoutMs", "bodyTimeoutMs", "idleTimeoutMs",
            ])
        limits.maxHeaderBytes = self.integer(object, "maxHeaderBytes", path, default: limits.maxHeaderBytes, range: 1024...1_048_576)
        // At most 8 MiB, so that an event's journal record, the body with its ids, fits the journal's frame limit
        // of 16 MiB. A larger record would be acknowledged and then skipped as damage by the next recovery.
        limits.maxBodyBytes = self.integer(object, "maxBodyBytes", path, default: limits.maxBodyBytes, range: 1024...8_388_608)
        limits.maxBufferedRequestBytes = self.integer(
            object, "maxBufferedRequestBytes", path, default: limits.maxBufferedRequestBytes, range: 1024...(1 << 40))
        if limits.maxBufferedRequestBytes < limits.smallestBufferedRequestBytes {
            self.fail(
                "\(path).maxBufferedRequestBytes",
                "must be at least limits.maxHeaderBytes + limits.maxBodyBytes "
                    + "+ max(\(Limits.maxChunkSizeLineBytes + 2), limits.maxHeaderBytes) "
                    + "(\(limits.smallestBufferedRequestBytes)), so that one request of the largest size fits, "
                    + "chunked or not")
        }
        limits.maxConnections = self.integer(object, "maxConnections", path, default: limits.maxConnections, range: 1...1_000_000)
        limits.maxConnectionsPerClient = self.integer(
            object, "maxConnectionsPerClient", path, default: limits.maxConnectionsPerClient, range: 1...1_000_000)
        limits.headerTimeoutMs = self.integer(object, "headerTimeoutMs", path, default: limits.headerTimeoutMs, range: 100...3_600_000)
        limits.bodyTimeoutMs = self.integer(object, "bodyTimeoutMs", path, default: limits.bodyTimeoutMs, range: 100...3_600_000)
        limits.idleTimeoutMs = self.integer(object, "idleTimeoutMs", path, default: limits.idleTimeoutMs, range: 100...86_400_000)
        return limits
    }

    mutating func journalSettings(_ value: JSONValue?) -> JournalSettings {
        var settings = JournalSettings()
        guard let object = self.object(value, "$.journal") else { return settings }
        self.rejectUnknownKeys(object, "$.journal", known: ["segmentBytes", "retryAfterSeconds", "retentionSeconds"])
        settings.segmentBytes = self.integer(
            object, "segmentBytes", "$.journal", default: settings.segmentBytes, range: 65_536...(1 << 34))
        settings.retryAfterSeconds = self.integer(
            object, "retryAfterSeconds", "$.journal", default: settings.retryAfterSeconds, range: 1...3600)
        if object["retentionSeconds"] != nil {
            settings.retentionSeconds = self.integer(
                object, "retentionSeconds", "$.journal", default: 0, range: 60...(10 * 365 * 86_400))
        }
        return settings
    }

    mutating func dedupeSettings(_ value: JSONValue?) -> DedupeSettings {
        var settings = DedupeSettings()
        guard let object = self.object(value, "$.dedupe") else { return settings }
        self.rejectUnknownKeys(object, "$.dedupe", known: ["capacity"])
        settings.capacity = self.integer(object, "capacity", "$.dedupe", default: settings.capacity, range: 1...100_000_000)
        return settings
    }

    mutating func deliveryDefaults(_ value: JSONValue?) -> DeliveryDefaults {
        var defaults = DeliveryDefaults()
        guard let object = self.object(value, "$.delivery") else { return defaults }
        let path = "$.delivery"
        self.rejectUnknownKeys(
            object, path,
            known: Self.retryKeys.union(["timeoutMs", "concurrency", "maxRetryAfterSeconds", "breakerThreshold", "transferThreads"]))
        defaults.retry = self.retryPolicy(object, path, inherited: defaults.retry)
        defaults.timeoutMs = self.integer(object, "timeoutMs", path, default: defaults.timeoutMs, range: 100...600_000)
        defaults.concurrency = self.integer(object, "concurrency", path, default: defaults.concurrency, range: 1...1024)
        defaults.maxRetryAfterSeconds = self.integer(
            object, "maxRetryAfterSeconds", path, default: defaults.maxRetryAfterSeconds, range: 0...604_800)
        defaults.breakerThreshold = self.integer(
            object, "breakerThreshold", path, default: defaults.breakerThreshold, range: 1...10_000)
        defaults.transferThreads = self.integer(
            object, "transferThreads", path, default: defaults.transferThreads, range: 1...16)
        return defaults
    }

    static let retryKeys: Set<String> = ["retrySchedule", "jitter", "maxAttempts", "maxAgeSeconds"]

    mutating func retryPolicy(_ object: JSONObject, _ path: String, inherited: RetryPolicy) -> RetryPolicy {
        var policy = inherited
        if let value = object["retrySchedule"] {
            let schedulePath = "\(path).retrySchedule"
            if let elements = value.arrayValue, !elements.isEmpty {
                var schedule: [Double] = []
                for (index, element) in elements.enumerated() {
                    if let seconds = element.numberValue, seconds >= 0, seconds <= 604_800 {
                        schedule.append(seconds)
                    } else {
                        self.fail("\(schedulePath)[\(index)]", "must be a number of seconds from 0 to 604800")
                    }
                }
                policy.scheduleSeconds = schedule
            } else {
                self.fail(schedulePath, "must be a non-empty array of delays in seconds")
            }
        }
        policy.jitter = self.number(object, "jitter", path, default: policy.jitter, range: 0...1)
        policy.maxAttempts = self.integer(object, "maxAttempts", path, default: policy.maxAttempts, range: 1...1000)
        policy.maxAgeSeconds = self.integer(object, "maxAgeSeconds", path, default: policy.maxAgeSeconds, range: 1...31_536_000)
        return policy
    }
}
