import Foundation
import PortoutCore
import PortoutTestSupport
import Testing

@testable import PortoutRelay

@Suite(.serialized)
struct OpenAPITests {
    static let apiKey = "schemathesis-key-0123456789"

    @Test func documentServedAndParses() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        let response = try #require(try harness.client().request("GET", "/openapi.json"))
        #expect(response.status == 200)
        let document = try #require(response.json?.objectValue)
        #expect(document["openapi"] == "3.1.0")
        let paths = Set(document["paths"]?.objectValue?.keys ?? [])
        #expect(paths == [
            "/webhooks/{tenant}", "/projects/{project}/portOuts", "/projects/{project}/portOuts/{portOut}",
            "/projects/{project}/portOuts/{portOut}/expire", "/projects/{project}/portOuts/{portOut}/credentials",
            "/testing/projects/{project}/portOuts/{portOut}/simulate", "/healthz", "/readyz", "/openapi.json",
        ])
    }

    /// Runs schemathesis (PyPI) with every check against the running relay, with data in it to find and the
    /// emulator as the upstream of forwarded calls.
    @Test func schemathesisFindsNoFailures() throws {
        let (emulator, emulatorPort) = try EmulatorTests.emulator()
        defer { emulator.shutdown() }
        let harness = try RelayHarness(
            tenantsJSON: """
                [{"id": "gigs", "projects": ["acme-mobile"], "apiKeys": ["\(Self.apiKey)"],
                  "verify": {"secrets": ["\(RelayHarness.inboundSecret)"]},
                  "upstream": {"baseUrl": "http://127.0.0.1:\(emulatorPort)", "apiKey": "\(EmulatorTests.fullKey)"}}]
                """)
        defer { harness.finish() }
        for (index, status) in ["initiated", "processing", "issued"].enumerated() {
            let response = try harness.post(Events.portOut("pout_schema_\(index)", status: status), tenant: "gigs")
            #expect(response.status == 202)
        }
        let config = CarrierFeedTests.repositoryRoot + "/tools/schemathesis/schemathesis.toml"
        let run = try PythonProcess(
            code: "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'schemathesis'; sys.exit(schemathesis())",
            arguments: [
                "--config-file", config, "run", "http://127.0.0.1:\(harness.port)/openapi.json",
                "-H", "Authorization: Bearer \(Self.apiKey)", "--checks", "all", "--max-examples", "40",
                "--seed", "20261204", "--no-color",
            ])
        let output = run.finish()
        #expect(run.exitStatus == 0, "schemathesis reported failures:\n\(output.suffix(4000))")
        #expect(output.contains("passed"))
    }
}
