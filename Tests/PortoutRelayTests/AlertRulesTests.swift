import Foundation
import PortoutCore
import PortoutTestSupport
import Testing

@testable import PortoutRelay

/// deploy/alerts.yml: promtool's checks and unit tests of the rules, and the rules evaluated over metrics scraped
/// from a running relay, so that a renamed metric, label or label value breaks a test.
@Suite(.serialized)
struct AlertRulesTests {
    static let rulesPath = CarrierFeedTests.repositoryRoot + "/deploy/alerts.yml"
    static let unitTestsPath = CarrierFeedTests.repositoryRoot + "/Tests/PortoutRelayTests/Data/alerts-test.yml"
    static let instance = "relay-1:9090"

    static func promtool(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let promtool = try #require(AdminTests.promtool(), "promtool is missing; make test fetches it into .build/tools")
        let (status, output) = runProgramCapturingOutput(promtool, arguments, inputPath: "/dev/null")
        return (status, output)
    }

    @Test func rulesPassPromtoolCheck() throws {
        let result = try Self.promtool(["check", "rules", Self.rulesPath])
        #expect(result.status == 0, "promtool check rules: \(result.output)")
        #expect(result.output.contains("SUCCESS: 22 rules found"), "promtool check rules: \(result.output)")
    }

    @Test func rulesPassTheirUnitTests() throws {
        let result = try Self.promtool(["test", "rules", Self.unitTestsPath])
        #expect(result.status == 0, "promtool test rules: \(result.output)")
    }

    @Test func everyAlertHasARunbookSection() throws {
        let readme = try String(contentsOfFile: CarrierFeedTests.repositoryRoot + "/deploy/README.md", encoding: .utf8)
        let sections = Set(Self.matches(#"(?m)^### (\w+)$"#, in: readme, group: 1).map { $0.lowercased() })
        let rules = try String(contentsOfFile: Self.rulesPath, encoding: .utf8)
        let alerts = Self.matches(#"- alert: (\w+)"#, in: rules, group: 1)
        let runbooks = Self.matches(#"runbook: "deploy/README\.md#(\w+)""#, in: rules, group: 1)
        #expect(alerts.count == 22)
        #expect(runbooks.count == alerts.count, "every alert needs a runbook annotation")
        for runbook in runbooks {
            #expect(sections.contains(runbook), "deploy/README.md has no section for #\(runbook)")
        }
    }

    /// Drives a relay into the states that the ticket and page alerts describe, scrapes its metrics page before
    /// and after, and has promtool evaluate the rules over those samples as a Prometheus would see them.
    @Test func rulesFireOnScrapedMetrics() throws {
        let gone = try RecordingSink { _, _ in .init(status: 410) }
        let rejects = try RecordingSink { _, _ in .init(status: 400) }
        let failing = try RecordingSink { _, _ in .init(status: 503) }
        let paused = try RecordingSink()
        defer {
            for sink in [gone, rejects, failing, paused] {
                sink.shutdown()
            }
        }
        let sinks = [("gone", gone), ("rejects", rejects), ("failing", failing), ("paused", paused), ("retired", failing)]
        let destinations = sinks.map { id, sink in
            """
            {"id": "\(id)", "url": "\(sink.url)/hook", "secret": "\(RelayHarness.outboundSecret)",
             "retrySchedule": [3600], "jitter": 0}
            """
        }
        // Port outs count as stalled one second after `initiated`.
        let extra = AdminTests.tokenConfig + #", "stalledAfterSeconds": {"initiated": 1}"#
        let harness = try RelayHarness(destinations: "[\(destinations.joined(separator: ","))]", extra: extra)
        defer { harness.finish() }
        #expect(try AdminTests.admin(harness, "POST", "/admin/destinations/t1/paused/pause").status == 200)
        let before = try Self.scrape(harness)

        #expect(try harness.post(Events.portOut("pout_alert_a", status: "initiated")).status == 202)
        #expect(try harness.post(Events.portOut("pout_alert_b", status: "initiated")).status == 202)
        let forged = try harness.post(Events.portOut("pout_alert_c", status: "initiated"), secret: "whsec_d3Jvbmc=")
        #expect(forged.status == 401)
        #expect(try harness.post(Events.portOut("pout_alert_d", status: "transferred")).status == 422)
        for _ in 0..<2 {
            let unknownTenant = try harness.post(Events.portOut("pout_alert_e", status: "initiated"), tenant: "nobody")
            #expect(unknownTenant.status == 404)
            #expect(try harness.post([UInt8](repeating: UInt8(ascii: "x"), count: 300_000)).status == 413)
        }
        let settled = waitUntil {
            let statistics = Dictionary(
                uniqueKeysWithValues: harness.relay!.deliveryStatistics().map { ($0.destination, $0) })
            return statistics["gone"]?.mode == .disabled && statistics["rejects"]?.deadLettered == 2
                && statistics["failing"]?.retries == 2 && statistics["retired"]?.retries == 2
                && statistics["paused"]?.pending == 2
        }
        #expect(settled, "\(harness.relay!.deliveryStatistics())")
        // A reload that leaves "retired" out keeps its two deliveries waiting for it.
        let remaining = RelayHarness.tenantsJSON(destinations: "[\(destinations.dropLast().joined(separator: ","))]")
        let report = harness.relay!.reload(try harness.config(tenantsJSON: remaining, extra: extra))
        #expect(report.destinations.pendingOfRemoved["t1/retired"] == 2)
        Thread.sleep(forTimeInterval: 1.1)
        let after = try Self.scrape(harness)
        Self.expectRulesUseExportedSeries(after)

        let labels = "instance: \"\(Self.instance)\", job: portout-relay, tenant: t1"
        let silent = [
            "PortoutRelayDown", "PortoutRelayRestarting", "PortoutRelayWebhooksUnavailable",
            "PortoutRelayJournalWriteFailures", "PortoutRelayJournalStalled", "PortoutRelayDeliveryThreadBlocked",
            "PortoutRelaySignaturesRejected",
            "PortoutRelayDeliveryBacklogCritical",
            "PortoutRelayDestinationModeUnknown", "PortoutRelayDestinationPaused", "PortoutRelayBreakerOpen",
            "PortoutRelayUnconfiguredDeliveries", "PortoutRelaySlowJournalSync", "PortoutRelayConnectionsRejected",
            "PortoutRelayRequestBufferFull", "PortoutRelayStalledPortOuts",
        ]
        let expected = """
                  - eval_time: 25m
                    alertname: PortoutRelayEventsInvalid
                    exp_alerts:
                      - exp_labels: {severity: ticket, instance: "\(Self.instance)", tenant: t1}
                        exp_annotations:
                          summary: "portout-relay \(Self.instance) rejected correctly signed events of tenant t1"
                          description: >-
                            Events that passed the signature check were rejected as invalid (400, 409, 415 or 422) in
                            the last 30 minutes. The carrier gets the same answer on every retry, so these events are
                            lost until it resends them in a form the relay accepts.
                          runbook: "deploy/README.md#portoutrelayeventsinvalid"
                  - eval_time: 25m
                    alertname: PortoutRelayUnknownTenant
                    exp_alerts:
                      - exp_labels: {severity: ticket, instance: "\(Self.instance)"}
                        exp_annotations:
                          summary: "portout-relay \(Self.instance) answers 404 to webhooks for tenants it does not have"
                          description: >-
                            Webhooks keep arriving at /webhooks/{tenant} paths of tenants that the configuration does
                            not name. A reload that removed or renamed a tenant, or a wrong URL at the carrier, loses
                            those events.
                          runbook: "deploy/README.md#portoutrelayunknowntenant"
                  - eval_time: 25m
                    alertname: PortoutRelayWebhooksTooLarge
                    exp_alerts:
                      - exp_labels: {severity: ticket, instance: "\(Self.instance)", tenant: t1}
                        exp_annotations:
                          summary: "portout-relay \(Self.instance) answers 413 to webhooks of tenant t1"
                          description: >-
                            Webhook bodies over limits.maxBodyBytes got 413 at least twice in 30 minutes. The carrier
                            gets the same answer on every retry, so those events are lost until the limit is raised.
                          runbook: "deploy/README.md#portoutrelaywebhookstoolarge"
                  - eval_time: 25m
                    alertname: PortoutRelayDeliveryBacklog
                    exp_alerts:
                      - exp_labels: {severity: ticket, \(labels), destination: failing}
                        exp_annotations:
                          summary: "t1/failing has had a delivery pending for over 15 minutes"
                          description: >-
                            The destination has been active for 15 minutes or more, but its oldest unsettled delivery
                            has waited 25m 0s since its event was accepted or replayed: the destination is failing, slow
                            or rate-limited.
                          runbook: "deploy/README.md#portoutrelaydeliverybacklog"
                  - eval_time: 25m
                    alertname: PortoutRelayDestinationDisabled
                    exp_alerts:
                      - exp_labels: {severity: page, \(labels), destination: gone, mode: disabled}
                        exp_annotations:
                          summary: "t1/gone answered 410 Gone and is disabled"
                          description: >-
                            Its deliveries are held, not dead-lettered, until an operator resumes the destination.
                            Nothing is sent to it meanwhile.
                          runbook: "deploy/README.md#portoutrelaydestinationdisabled"
                  - eval_time: 25m
                    alertname: PortoutRelayDeadLetters
                    exp_alerts:
                      - exp_labels: {severity: ticket, \(labels), destination: rejects}
                        exp_annotations:
                          summary: "t1/rejects dead-lettered deliveries"
                          description: >-
                            Deliveries gave up in the last 30 minutes, or since a reload added the destination: a
                            status other than 408, 425, 429 or 5xx, or retries ran out. The destination did not receive
                            those events.
                          runbook: "deploy/README.md#portoutrelaydeadletters"
                  - eval_time: 4h10m
                    alertname: PortoutRelayDestinationPaused
                    exp_alerts:
                      - exp_labels: {severity: ticket, \(labels), destination: paused, mode: paused}
                        exp_annotations:
                          summary: "t1/paused has been paused for over 4 hours"
                          description: >-
                            Its deliveries are held until it is resumed. GET /admin/destinations gives the reason of
                            the pause as modeReason.
                          runbook: "deploy/README.md#portoutrelaydestinationpaused"
                  - eval_time: 4h10m
                    alertname: PortoutRelayUnconfiguredDeliveries
                    exp_alerts:
                      - exp_labels: {severity: ticket, \(labels), destination: retired}
                        exp_annotations:
                          summary: "2 deliveries wait for t1/retired, which is not configured"
                          description: >-
                            A reload removed the destination, or the configuration no longer names it, while it had
                            unsettled deliveries. Nothing sends them until it is configured again.
                          runbook: "deploy/README.md#portoutrelayunconfigureddeliveries"
                  - eval_time: 4h10m
                    alertname: PortoutRelayStalledPortOuts
                    exp_alerts:
                      - exp_labels: {severity: ticket, instance: "\(Self.instance)", tenant: t1, status: initiated}
                        exp_annotations:
                          summary: "2 port outs of tenant t1 have stayed initiated past their threshold"
                          description: >-
                            The carrier has sent no newer status for these port outs within stalledAfterSeconds.
                            GET /admin/stalled lists them.
                          runbook: "deploy/README.md#portoutrelaystalledportouts"
            """
        try Self.expectAlerts(before: before, after: after, silentAt25Minutes: silent, expected: expected, in: harness)
    }

    /// Starts a relay on a destinations.json that cannot be read, so that it pauses every destination, and
    /// checks that the mode-unknown page fires on its metrics until an operator resumes the destination.
    @Test func lostModesFireOnScrapedMetrics() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: AdminTests.destination(sink.url), extra: AdminTests.tokenConfig)
        defer { harness.finish() }
        harness.stop()
        let modesFile = harness.directory.path + "/data/destinations.json"
        try "not JSON".write(toFile: modesFile, atomically: true, encoding: .utf8)
        try harness.start()
        let before = try Self.scrape(harness)
        #expect(try harness.post(Events.portOut("pout_lost", status: "initiated")).status == 202)
        let after = try Self.scrape(harness)
        #expect(after[#"portout_destination_mode_unknown{tenant="t1",destination="d1"}"#] == 1)

        let labels = "instance: \"\(Self.instance)\", job: portout-relay, tenant: t1"
        let silent = [
            "PortoutRelayDeliveryBacklog", "PortoutRelayDeliveryBacklogCritical", "PortoutRelayDestinationDisabled",
            "PortoutRelayDestinationPaused",
        ]
        let expected = """
                  - eval_time: 25m
                    alertname: PortoutRelayDestinationModeUnknown
                    exp_alerts:
                      - exp_labels: {severity: page, \(labels), destination: d1}
                        exp_annotations:
                          summary: "t1/d1 is paused because its saved mode was lost"
                          description: >-
                            destinations.json could not be read at a start, so the relay paused every destination
                            rather than send to one that an operator had paused or a 410 had disabled. Nothing is sent
                            to this destination until an operator resumes it.
                          runbook: "deploy/README.md#portoutrelaydestinationmodeunknown"
            """
        try Self.expectAlerts(before: before, after: after, silentAt25Minutes: silent, expected: expected, in: harness)

        #expect(try AdminTests.admin(harness, "POST", "/admin/destinations/t1/d1/resume").status == 200)
        #expect(try Self.scrape(harness)[#"portout_destination_mode_unknown{tenant="t1",destination="d1"}"#] == 0)
    }

    /// Writes a promtool test of the scraped samples with the expected alerts, and runs it.
    static func expectAlerts(
        before: [String: Double], after: [String: Double], silentAt25Minutes silent: [String], expected: String,
        in harness: RelayHarness
    ) throws {
        let tests = Self.scrapedCase(before: before, after: after, silentAt25Minutes: silent, expected: expected)
        let path = harness.directory.file("alerts-scraped-test.yml")
        try tests.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try Self.promtool(["test", "rules", path])
        #expect(result.status == 0, "promtool test rules: \(result.output)")
    }

    /// Returns the page's samples by series, as `name{label="value",…}`.
    static func scrape(_ harness: RelayHarness) throws -> [String: Double] {
        let response = try AdminTests.admin(harness, "GET", "/metrics")
        try #require(response.status == 200)
        var samples: [String: Double] = [:]
        for line in String(decoding: response.body, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            let separator = try #require(line.lastIndex(of: " "), "sample line without a value: \(line)")
            let value = try #require(Double(line[line.index(after: separator)...]), "sample value: \(line)")
            samples[String(line[..<separator])] = value
        }
        return samples
    }

    /// Returns a promtool test file: every series scraped after the activity, as a Prometheus scraping the relay
    /// once a minute would store it, the alerts in `silent` checked for silence at 25 minutes, and the `expected`
    /// entries of `alert_rule_test`. Nothing changes after minute 1, so an alert that waits for a rate stays silent.
    ///
    /// Each series has its value from the first scrape at minute 0 and from the second from minute 1 on, except
    /// the oldest pending age, which a relay that delivers nothing reports 60 s higher each minute. promtool's
    /// clock starts at the Unix epoch, so Unix times move by the same shift, which puts the second scrape at
    /// minute 1.
    static func scrapedCase(
        before: [String: Double], after: [String: Double], silentAt25Minutes silent: [String], expected: String
    ) -> String {
        let up = "up{job=\"portout-relay\", instance=\"\(Self.instance)\"}"
        var series = ["      - series: '\(up)'\n        values: '1x300'"]
        let shiftSeconds = 60 - Date().timeIntervalSince1970.rounded(.down)
        for (name, value) in after.sorted(by: { $0.key < $1.key }) {
            let labelled = Self.withScrapeLabels(name)
            let isUnixTime = name.hasPrefix("portout_start_time_seconds") || name.contains("_timestamp_seconds")
            let shift = { (time: Double) in isUnixTime && time > 0 ? time + shiftSeconds : time }
            let values: String
            if name.hasPrefix("portout_delivery_oldest_pending_age_seconds") {
                values = value > 0 ? "0+60x300" : "0x300"
            } else {
                values = "\(Self.format(shift(before[name] ?? 0))) \(Self.format(shift(value)))x300"
            }
            series.append("      - series: '\(labelled)'\n        values: '\(values)'")
        }
        let silentTests = silent.map { "      - eval_time: 25m\n        alertname: \($0)" }
        return """
            rule_files:
              - \(Self.rulesPath)
            evaluation_interval: 1m
            tests:
              - name: metrics scraped from a relay
                interval: 1m
                input_series:
            \(series.joined(separator: "\n"))
                alert_rule_test:
            \(silentTests.joined(separator: "\n"))
            \(expected)

            """
    }

    /// Adds the `instance` and `job` labels that a Prometheus scrape adds to each series.
    static func withScrapeLabels(_ series: String) -> String {
        let scrapeLabels = "instance=\"\(Self.instance)\",job=\"portout-relay\""
        guard let brace = series.firstIndex(of: "{") else {
            return "\(series){\(scrapeLabels)}"
        }
        return "\(series[..<brace]){\(scrapeLabels),\(series[series.index(after: brace)...])"
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    /// Checks that each metric the rules name is on the page, and that each label they match on or group by,
    /// and each label value they match, appears on that metric's series.
    static func expectRulesUseExportedSeries(_ page: [String: Double]) {
        var labelValues: [String: [String: Set<String>]] = [:]
        for series in page.keys {
            let (name, labels) = Self.parseSeries(series)
            let family = ["_bucket", "_count", "_sum"].first { name.hasSuffix($0) }.map { String(name.dropLast($0.count)) }
            for key in Set([name, family ?? name]) {
                var known = labelValues[key] ?? [:]
                for (label, value) in labels {
                    known[label, default: []].insert(value)
                }
                labelValues[key] = known
            }
        }
        let expressions = Self.ruleExpressions()
        #expect(expressions.count == 22)
        for expression in expressions {
            let names = Self.matches(#"portout_[a-z_]+"#, in: expression)
            let labelsOfExpression = names.reduce(into: Set<String>()) { labels, name in
                labels.formUnion(labelValues[name].map { Array($0.keys) } ?? [])
            }
            for name in names {
                #expect(labelValues[name] != nil, "\(name) is not on the metrics page; used in: \(expression)")
            }
            for clause in Self.matches(#"(?:by|on) \(([a-z_, ]+)\)"#, in: expression, group: 1) {
                for label in clause.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) })
                where !["instance", "job", "le"].contains(label) {
                    #expect(labelsOfExpression.contains(label), "label \(label) is on none of \(names)")
                }
            }
            for selector in Self.matches(#"portout_[a-z_]+\{[^}]*\}"#, in: expression) {
                let (name, _) = Self.parseSeries(selector)
                for matcher in Self.matches(#"[a-z_]+=~?"[^"]*""#, in: selector) {
                    let isRegex = matcher.contains("=~")
                    let parts = matcher.split(separator: isRegex ? "=~" : "=", maxSplits: 1).map(String.init)
                    let label = parts[0]
                    let pattern = String(parts[1].dropFirst().dropLast())
                    let exported = labelValues[name]?[label] ?? []
                    for value in isRegex ? pattern.split(separator: "|").map(String.init) : [pattern] {
                        #expect(exported.contains(value), "\(name) has no series with \(label)=\"\(value)\"")
                    }
                }
            }
        }
    }

    /// Returns the `expr` of each rule in deploy/alerts.yml, folded onto one line.
    static func ruleExpressions() -> [String] {
        guard let text = try? String(contentsOfFile: Self.rulesPath, encoding: .utf8) else {
            Issue.record("cannot read \(Self.rulesPath)")
            return []
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var expressions: [String] = []
        var index = 0
        while index < lines.count {
            let line = lines[index]
            index += 1
            guard let range = line.range(of: "expr: ") else { continue }
            let value = String(line[range.upperBound...])
            guard value == ">-" else {
                expressions.append(value)
                continue
            }
            let indent = line.prefix { $0 == " " }.count
            var folded: [String] = []
            while index < lines.count, lines[index].prefix(while: { $0 == " " }).count > indent {
                folded.append(lines[index].trimmingCharacters(in: .whitespaces))
                index += 1
            }
            expressions.append(folded.joined(separator: " "))
        }
        return expressions
    }

    /// Splits `name{a="1",b="2"}` into its name and labels. A label value with a quote or a comma would be cut
    /// short, and none of the relay's series in these tests has one.
    static func parseSeries(_ series: String) -> (name: String, labels: [(String, String)]) {
        guard let brace = series.firstIndex(of: "{") else {
            return (series, [])
        }
        let name = String(series[..<brace])
        let body = series[series.index(after: brace)...].dropLast()
        let labels = body.split(separator: ",").compactMap { pair -> (String, String)? in
            guard let equals = pair.firstIndex(of: "=") else { return nil }
            let key = pair[..<equals].trimmingCharacters(in: .whitespaces)
            let value = pair[pair.index(after: equals)...].drop { $0 == "~" }
            return (key, String(value.trimmingCharacters(in: .whitespaces).dropFirst().dropLast()))
        }
        return (name, labels)
    }

    static func matches(_ pattern: String, in text: String, group: Int = 0) -> [String] {
        guard let expression = try? NSRegularExpression(pattern: pattern) else {
            Issue.record("invalid pattern \(pattern)")
            return []
        }
        let range = NSRange(text.startIndex..., in: text)
        return expression.matches(in: text, range: range).compactMap { match in
            Range(match.range(at: group), in: text).map { String(text[$0]) }
        }
    }
}
