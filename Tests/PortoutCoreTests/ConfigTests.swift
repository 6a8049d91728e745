import Foundation
import Testing

@testable import PortoutCore

struct ConfigTests {
    static func parse(_ text: String) throws(ConfigError) -> RelayConfig {
        try RelayConfig.parse(Array(text.utf8), file: "config.json", baseDirectory: "/srv/relay")
    }

    @Test func defaultsFillOmittedKeys() throws {
        let config = try Self.parse(
            #"{"tenants": [{"id": "t1", "projects": ["p"], "verify": {"secrets": ["whsec_c2VjcmV0"]}}]}"#)
        #expect(config.listen == ListenAddress(host: "127.0.0.1", port: 8080))
        #expect(config.dataDir == "/srv/relay/data")
        #expect(config.limits == Limits())
        #expect(config.dedupe.capacity == 1_000_000)
        #expect(config.tenants[0].verify.scheme == .standardWebhooks)
        #expect(config.tenants[0].verify.toleranceSeconds == 300)
    }

    @Test func everyProblemNamedByPath() {
        let text = """
            {"listen": "nowhere", "limits": {"maxBodyBytes": -1}, "surprise": 1,
             "tenants": [{"id": "t1", "projects": [], "verify": {"scheme": "rot13", "secrets": []},
                          "destinations": [{"id": "d", "url": "ftp://x", "secret": "plain", "statuses": ["lost"],
                                            "previousSecrets": ["whsec_c2VjcmV0", "plain"]},
                                           {"id": "d", "url": "http://127.0.0.1:1/", "secret": {"env": "PORTOUT_UNSET_VARIABLE"}}]}]}
            """
        do {
            _ = try Self.parse(text)
            Issue.record("an invalid configuration was accepted")
        } catch {
            let paths = Set(error.problems.map(\.path))
            for expected in [
                "$.listen", "$.limits.maxBodyBytes", "$.surprise", "$.tenants[0].projects", "$.tenants[0].verify.scheme",
                "$.tenants[0].destinations[0].url", "$.tenants[0].destinations[0].secret",
                "$.tenants[0].destinations[0].statuses[0]", "$.tenants[0].destinations[0].previousSecrets[1]",
                "$.tenants[0].destinations[1].id",
                "$.tenants[0].destinations[1].secret.env",
            ] {
                #expect(paths.contains(expected), "missing problem at \(expected): \(error.problems)")
            }
        }
    }

    @Test func destinationURLChecked() throws {
        func destination(_ url: String) -> String {
            #"{"tenants": [{"id": "t1", "projects": ["p"], "verify": {"secrets": ["whsec_c2VjcmV0"]}, "#
                + #""destinations": [{"id": "d", "url": "\#(url)", "secret": "whsec_c2VjcmV0"}]}]}"#
        }
        // The backslash and t below reach the parser as a JSON escape for a tab.
        let rejected: [(url: String, message: String)] = [
            ("http://", "must be a valid URL with a host, as in https://billing.internal/port-outs"),
            ("https:///path", "must be a valid URL with a host, as in https://billing.internal/port-outs"),
            ("http://billing.internal/hook#part", "must not have a #fragment, which is never sent: remove it"),
            ("http://billing.internal/a b", "must not contain spaces or control characters; write a space as %20"),
            ("http://billing.internal/\\t", "must not contain spaces or control characters; write a space as %20"),
            ("ftp://billing.internal/", "must start with http:// or https://, as in https://billing.internal/port-outs"),
            ("billing.internal/hook", "must start with http:// or https://, as in https://billing.internal/port-outs"),
            ("http://127.0.0.1:99999/x", "has port 99999, which is not between 1 and 65535"),
            ("http://127.0.0.1:0/x", "has port 0, which is not between 1 and 65535"),
            ("http://billing.internal/%zz", "contains a % that is not followed by two hexadecimal digits; write a percent sign as %25"),
            ("http://billing.internal/100%", "contains a % that is not followed by two hexadecimal digits; write a percent sign as %25"),
            ("http://a@b@127.0.0.1:8080/x", "has more than one @ before the host; write an @ in a user name or password as %40"),
            ("http://[v1.fe]:8080/x", "has a host in brackets that is not an IPv6 address"),
            ("http://127.0.0.1\u{200B}:8080/x", "must be ASCII: percent-encode other characters, and write a host name in its xn-- form"),
            ("http://\u{FF11}27.0.0.1/", "must be ASCII: percent-encode other characters, and write a host name in its xn-- form"),
        ]
        for (url, message) in rejected {
            do {
                _ = try Self.parse(destination(url))
                Issue.record("destination url \(url) was accepted")
            } catch {
                #expect(error.problems.map(\.path) == ["$.tenants[0].destinations[0].url"], "\(url)")
                #expect(error.problems.map(\.message) == [message], "\(url)")
            }
        }
        let accepted = [
            "http://127.0.0.1:8080/hook", "https://billing.internal/port-outs?source=relay", "http://[::1]:9/",
            "https://user:pass@billing.internal/", "HTTPS://billing.internal/a%2Fb", "http://127.0.0.1:65535/",
            "http://user:p%40ss@billing.internal/x?next=a@b", "http://[fe80::1%25eth0]:8080/", "http://[::ffff:127.0.0.1]/",
            "https://xn--bcher-kva.example/",
        ]
        for url in accepted {
            #expect(try Self.parse(destination(url)).tenants[0].destinations[0].url == url)
        }
    }

    @Test func upstreamBaseURLHasNoQuery() throws {
        let tenant = #"{"id": "t1", "projects": ["p"], "verify": {"secrets": ["whsec_c2VjcmV0"]}, "#
        do {
            _ = try Self.parse(#"{"tenants": [\#(tenant)"upstream": {"baseUrl": "http://127.0.0.1:1/?a=b", "apiKey": "carrier-key"}}]}"#)
            Issue.record("a base URL with a query was accepted")
        } catch {
            #expect(error.problems.map(\.path) == ["$.tenants[0].upstream.baseUrl"])
            #expect(error.problems.first?.message == "must not have a ?query, because request paths are appended to this URL")
        }
    }

    @Test func transferThreadsDefaultAndRange() throws {
        let tenants = #""tenants": [{"id": "t1", "projects": ["p"], "verify": {"secrets": ["whsec_c2VjcmV0"]}}]"#
        let defaults = try Self.parse("{\(tenants)}")
        #expect(defaults.delivery.transferThreads == min(4, ProcessInfo.processInfo.activeProcessorCount))
        let three = try Self.parse(#"{"delivery": {"transferThreads": 3}, "#.appending(tenants + "}"))
        #expect(three.delivery.transferThreads == 3)
        for invalid in ["0", "17", "1.5", "\"2\""] {
            do {
                _ = try Self.parse(#"{"delivery": {"transferThreads": "#.appending(invalid + "}, " + tenants + "}"))
                Issue.record("transferThreads \(invalid) was accepted")
            } catch {
                #expect(error.problems.map(\.path) == ["$.delivery.transferThreads"], "\(invalid)")
            }
        }
    }

    @Test func bufferedRequestBytesFitOneRequest() throws {
        let tenants = #""tenants": [{"id": "t1", "projects": ["p"], "verify": {"secrets": ["whsec_c2VjcmV0"]}}]"#
        let defaults = try Self.parse("{\(tenants)}")
        #expect(defaults.limits.maxBufferedRequestBytes == 64 * 1024 * 1024)
        let exact = try Self.parse(
            #"{"limits": {"maxHeaderBytes": 1024, "maxBodyBytes": 2048, "maxBufferedRequestBytes": 7170}, "#
                .appending(tenants + "}"))
        #expect(exact.limits.maxBufferedRequestBytes == 7170)
        do {
            _ = try Self.parse(
                #"{"limits": {"maxHeaderBytes": 1024, "maxBodyBytes": 2048, "maxBufferedRequestBytes": 7169}, "#
                    .appending(tenants + "}"))
            Issue.record("maxBufferedRequestBytes below one maximal request was accepted")
        } catch {
            #expect(error.problems.map(\.path) == ["$.limits.maxBufferedRequestBytes"])
        }
    }

    /// A body over 8 MiB would make a journal record that recovery takes for damage.
    /// A low open-file limit lowers the connection limits together, so one client's share stays a quarter.
    @Test func connectionLimitsFitOpenFiles() {
        let limits = Limits()
        #expect(limits.maxBufferedRequestBytesPerClient == limits.maxBufferedRequestBytes / 4)
        let fitted = limits.fitted(openFileLimit: 1024, reservedDescriptors: 512)
        #expect(fitted.maxConnections == 512)
        #expect(fitted.maxConnectionsPerClient == 128)
        #expect(fitted.maxBufferedRequestBytesPerClient == limits.maxBufferedRequestBytes / 4)
        #expect(limits.fitted(openFileLimit: 1 << 20, reservedDescriptors: 512) == limits)

        var proxied = Limits()
        proxied.maxConnectionsPerClient = proxied.maxConnections
        #expect(proxied.fitted(openFileLimit: 1024, reservedDescriptors: 512).maxConnectionsPerClient == 512)
    }

    @Test func bodyLimitFitsJournalFrame() throws {
        let tenants = #""tenants": [{"id": "t1", "projects": ["p"], "verify": {"secrets": ["whsec_c2VjcmV0"]}}]"#
        #expect(try Self.parse(#"{"limits": {"maxBodyBytes": 8388608}, "# + tenants + "}").limits.maxBodyBytes == 8_388_608)
        do {
            _ = try Self.parse(#"{"limits": {"maxBodyBytes": 8388609}, "# + tenants + "}")
            Issue.record("a body limit over 8 MiB was accepted")
        } catch {
            #expect(error.problems.map(\.path) == ["$.limits.maxBodyBytes"])
        }
    }

    /// A setting the tenant's scheme does not read is rejected rather than ignored.
    @Test(arguments: [
        (#"{"scheme": "hex", "header": "X-Sig", "toleranceSeconds": 60, "secrets": ["s"]}"#, "$.tenants[0].verify.toleranceSeconds"),
        (#"{"header": "X-Sig", "secrets": ["whsec_c2VjcmV0"]}"#, "$.tenants[0].verify.header"),
    ])
    func unusedVerifySettingRejected(verify: String, path: String) throws {
        do {
            _ = try Self.parse(#"{"tenants": [{"id": "t1", "projects": ["p"], "verify": "# + verify + "}]}")
            Issue.record("\(path) was accepted")
        } catch {
            #expect(error.problems.map(\.path) == [path])
        }
    }

    @Test func secretFromEnvironmentAndFile() throws {
        // Line breaks and spaces around either value are not part of the secret.
        setenv("PORTOUT_TEST_SECRET", " whsec_ZW52LXNlY3JldA==\n", 1)
        let directory = NSTemporaryDirectory() + "portout-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "whsec_ZmlsZS1zZWNyZXQ=\n".write(toFile: directory + "/secret", atomically: true, encoding: .utf8)
        let text = """
            {"tenants": [{"id": "t1", "projects": ["p"],
              "verify": {"secrets": [{"env": "PORTOUT_TEST_SECRET"}, {"file": "secret"}]}}]}
            """
        let config = try RelayConfig.parse(Array(text.utf8), file: "c", baseDirectory: directory)
        #expect(config.tenants[0].verify.secrets.map(\.value) == ["whsec_ZW52LXNlY3JldA==", "whsec_ZmlsZS1zZWNyZXQ="])
        // A secret's description names its source, never its value.
        #expect(config.tenants[0].verify.secrets[0].description == "secret(env PORTOUT_TEST_SECRET)")
    }

    @Test func deployExampleIsValid() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        for name in [
            "PORTOUT_GIGS_INBOUND_SECRET", "PORTOUT_BILLING_SECRET", "PORTOUT_INVENTORY_SECRET",
        ] {
            setenv(name, "whsec_ZGVwbG95LWV4YW1wbGUtc2VjcmV0", 1)
        }
        setenv("PORTOUT_GIGS_READ_KEY", "deploy-example-read-key", 1)
        setenv("PORTOUT_GIGS_CARRIER_KEY", "deploy-example-carrier-key", 1)
        setenv("PORTOUT_ADMIN_TOKEN", "deploy-example-admin-token", 1)
        let config = try RelayConfig.load(path: root.path + "/deploy/config.example.json")
        #expect(config.dataDir == "/var/lib/portout-relay")
        #expect(config.tenants.first?.destinations.count == 2)
        #expect(config.tenants.first?.upstream?.baseURL == "https://api.gigs.com")
        #expect(config.admin.token?.source == "env PORTOUT_ADMIN_TOKEN")
    }

    @Test func sharedReadKeyRejected() {
        let text = """
            {"tenants": [{"id": "a", "projects": ["p"], "apiKeys": ["shared-key-0123456789"], "verify": {"secrets": ["whsec_c2VjcmV0"]}},
                         {"id": "b", "projects": ["q"], "apiKeys": ["shared-key-0123456789"], "verify": {"secrets": ["whsec_c2VjcmV0"]}}]}
            """
        do {
            _ = try Self.parse(text)
            Issue.record("a read key shared by two tenants was accepted")
        } catch {
            #expect(error.problems.map(\.path) == ["$.tenants[1].apiKeys[0]"])
        }
    }

    /// A Bearer token has no white space (RFC 6750), so a key or token with some could never match.
    @Test func bearerTokensWithSpaceRejected() {
        let text = """
            {"admin": {"token": "admin-token-0123456789 "},
             "tenants": [{"id": "a", "projects": ["p"],
                          "apiKeys": [" read-key-0123456789", "read key 0123456789", "short"],
                          "verify": {"secrets": ["whsec_c2VjcmV0"]}}]}
            """
        do {
            _ = try Self.parse(text)
            Issue.record("bearer tokens with white space were accepted")
        } catch {
            let keys = (0...2).map { "$.tenants[0].apiKeys[\($0)]" }
            #expect(error.problems.map(\.path) == ["$.admin.token"] + keys)
            #expect(error.problems.first?.message.contains("white space") == true)
            #expect(error.problems.last?.message.contains("at least 16 characters") == true)
        }
    }

    @Test func typeFilterNamesOnlyAcceptedTypes() throws {
        func tenant(acceptTypes: String, types: String) -> String {
            """
            {"tenants": [{"id": "t1", "projects": ["p"], "verify": {"secrets": ["whsec_c2VjcmV0"]}, \(acceptTypes)
              "destinations": [{"id": "d", "url": "http://127.0.0.1:1/", "secret": "whsec_c2VjcmV0", "types": \(types)}]}]}
            """
        }
        let builtIn = #"["com.gigs.portOut.created", "com.gigs.portOut.failed", "com.gigs.portOutCredentials.issued"]"#
        #expect(try Self.parse(tenant(acceptTypes: "", types: builtIn)).tenants[0].destinations[0].types?.count == 3)
        let updated = #"["com.gigs.portOut.updated"]"#
        let listed = try Self.parse(tenant(acceptTypes: #""acceptTypes": ["com.gigs.portOut.updated"],"#, types: updated))
        #expect(listed.tenants[0].destinations[0].types == ["com.gigs.portOut.updated"])
        do {
            _ = try Self.parse(tenant(acceptTypes: "", types: #"["com.gigs.portOut.created", "com.gigs.portOut.updated"]"#))
            Issue.record("a type the tenant never accepts was accepted in a destination filter")
        } catch {
            #expect(error.problems.map(\.path) == ["$.tenants[0].destinations[0].types[1]"])
            #expect(error.problems.first?.message.contains("acceptTypes") == true)
        }
    }

    @Test func missingEnvironmentSecretReported() {
        let text = #"{"tenants": [{"id": "t1", "projects": ["p"], "verify": {"secrets": [{"env": "PORTOUT_UNSET_VARIABLE"}]}}]}"#
        #expect(throws: ConfigError.self) { try Self.parse(text) }
    }
}

extension ConfigTests {
    @Test func adminOffLoopbackNeedsToken() throws {
        let tenants = #""tenants": [{"id": "t1", "projects": ["p"], "verify": {"secrets": ["whsec_c2VjcmV0"]}}]"#
        do {
            _ = try Self.parse(#"{"admin": {"listen": "0.0.0.0:9090"}, \#(tenants)}"#)
            Issue.record("an admin listener on all interfaces without a token was accepted")
        } catch {
            #expect(error.problems.map(\.path) == ["$.admin.token"])
        }
        for loopback in ["127.0.0.1:9090", "127.8.0.1:0", "[::1]:9090", "localhost:9090"] {
            let config = try Self.parse(#"{"admin": {"listen": "\#(loopback)"}, \#(tenants)}"#)
            #expect(config.admin.token == nil)
        }
        let guarded = try Self.parse(
            #"{"admin": {"listen": "10.1.2.3:9090", "token": "a-long-enough-admin-token"}, \#(tenants)}"#)
        #expect(guarded.admin.token?.value == "a-long-enough-admin-token")
        #expect(try Self.parse("{\(tenants)}").admin.listen == ListenAddress(host: "127.0.0.1", port: 9090))
    }

    @Test func replayLimitDefaultAndRange() throws {
        let tenants = #""tenants": [{"id": "t1", "projects": ["p"], "verify": {"secrets": ["whsec_c2VjcmV0"]}}]"#
        #expect(try Self.parse("{\(tenants)}").admin.maxUnfinishedReplays == 8)
        let raised = try Self.parse(#"{"admin": {"maxUnfinishedReplays": 64}, \#(tenants)}"#)
        #expect(raised.admin.maxUnfinishedReplays == 64)
        for invalid in ["0", "65", "2.5", "\"4\""] {
            do {
                _ = try Self.parse(#"{"admin": {"maxUnfinishedReplays": \#(invalid)}, \#(tenants)}"#)
                Issue.record("maxUnfinishedReplays \(invalid) was accepted")
            } catch {
                #expect(error.problems.map(\.path) == ["$.admin.maxUnfinishedReplays"], "\(invalid)")
            }
        }
    }
}
