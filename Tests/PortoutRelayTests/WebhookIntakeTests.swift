import Foundation
import PortoutCore
import PortoutCrypto
import PortoutTestSupport
import Testing

@testable import PortoutRelay

@Suite(.serialized)
struct WebhookIntakeTests {
    @Test func newEventAcceptedThenDuplicate() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        let body = Events.portOut("pout_a", status: "initiated")
        let first = try harness.post(body)
        #expect(first.status == 202)
        #expect(first.json == ["object": "receipt", "id": "evt_pout_a_initiated", "duplicate": false, "stale": false])
        let second = try harness.post(body)
        #expect(second.status == 200)
        #expect(second.json?.objectValue?["duplicate"] == .bool(true))
    }

    @Test func resentUnderNewEventIDIsDuplicate() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_a", status: "processing", eventID: "evt_1")).status == 202)
        let resent = try harness.post(Events.portOut("pout_a", status: "processing", eventID: "evt_2"))
        #expect(resent.status == 200)
        #expect(resent.json?.objectValue?["id"] == "evt_2")
    }

    @Test func backwardStatusIsStale() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_a", status: "issued")).status == 202)
        let stale = try harness.post(Events.portOut("pout_a", status: "processing"))
        #expect(stale.status == 202)
        #expect(stale.json?.objectValue?["stale"] == .bool(true))
        // A second terminal status does not move the port out forward either.
        #expect(try harness.post(Events.portOut("pout_a", status: "completed")).json?.objectValue?["stale"] == .bool(false))
        #expect(try harness.post(Events.portOut("pout_a", status: "failed")).json?.objectValue?["stale"] == .bool(true))
    }

    @Test func barePortOutObjectAccepted() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        let body = Events.bareObject("pout_bare", status: "processing")
        let missingProject = try harness.post(body)
        #expect(missingProject.status == 422)
        #expect(missingProject.json?.objectValue?["code"] == "projectRequired")
        let accepted = try harness.post(body, query: "?project=brit-tel")
        #expect(accepted.status == 202)
        let id = try #require(accepted.json?.objectValue?["id"]?.stringValue)
        #expect(id.hasPrefix("evt_bare_"))
        let again = try harness.post(body, query: "?project=brit-tel")
        #expect(again.status == 200)
        #expect(again.json?.objectValue?["id"]?.stringValue == id)
        for (index, query) in ["?project=brit-tel&project=acme-mobile", "?project=brit%zz"].enumerated() {
            let rejected = try harness.post(Events.bareObject("pout_query", status: "processing"), query: query)
            #expect(rejected.status == 422, "\(query)")
            #expect(rejected.json?.objectValue?["code"] == "invalidParameters", "\(query)")
            // An envelope's project is in its body, so the parameter is not read.
            #expect(try harness.post(Events.portOut("pout_query\(index)", status: "processing"), query: query).status == 202)
        }
    }

    /// Dedupe and ordering take a port out as one whatever the project, so a new status filed under another
    /// project would show the port out in both projects' listings.
    @Test func otherProjectStatusRejected() throws {
        let harness = try PortOutReadAPITests.harness()
        defer { harness.finish() }
        #expect(try harness.post(Events.bareObject("pout_p", status: "initiated"), query: "?project=brit-tel").status == 202)
        for body in [Events.portOut("pout_p", status: "processing"), Events.bareObject("pout_p", status: "processing")] {
            let rejected = try harness.post(body, query: "?project=acme-mobile")
            #expect(rejected.status == 409)
            #expect(rejected.json?.objectValue?["code"] == "projectConflict")
        }
        // A resend under the other project changes nothing, so it stays a duplicate.
        #expect(try harness.post(Events.bareObject("pout_p", status: "initiated"), query: "?project=acme-mobile").status == 200)
        #expect(try PortOutReadAPITests.get(harness, "/projects/acme-mobile/portOuts/pout_p").status == 404)
        // The rejection left no trace in the lifecycle: the port out's own project moves it on, after a restart too.
        try harness.restart()
        #expect(try harness.post(Events.portOut("pout_p", status: "processing", project: "brit-tel")).status == 202)
        #expect(try harness.post(Events.portOut("pout_p", status: "issued")).status == 409)
        #expect(try PortOutReadAPITests.get(harness, "/projects/brit-tel/portOuts/pout_p").json?.objectValue?["status"] == "processing")
    }

    /// An event that carries the port out without a status change would file it under its project too.
    @Test func otherProjectUpdateRejected() throws {
        let harness = try RelayHarness(tenantExtra: #""acceptTypes": ["com.gigs.portOut.updated"]"#)
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_u", status: "processing", project: "brit-tel")).status == 202)
        let rejected = try harness.post(Self.updated("pout_u", eventID: "evt_u_acme"))
        #expect(rejected.status == 409)
        #expect(rejected.json?.objectValue?["code"] == "projectConflict")
        #expect(try harness.post(Self.updated("pout_u", eventID: "evt_u_brit", project: "brit-tel")).status == 202)

        // An update before any status fixes the project as a status would, after a restart too.
        #expect(try harness.post(Self.updated("pout_v", eventID: "evt_v_brit", project: "brit-tel")).status == 202)
        try harness.restart()
        let status = try harness.post(Events.portOut("pout_v", status: "initiated"))
        #expect(status.status == 409)
        #expect(status.json?.objectValue?["code"] == "projectConflict")
        #expect(try harness.post(Self.updated("pout_v", eventID: "evt_v_acme")).status == 409)
        #expect(try harness.post(Events.portOut("pout_v", status: "initiated", project: "brit-tel")).status == 202)
    }

    @Test func schemaFaultsListEveryField() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        let body = Array(#"{"object":"event","id":"evt_x","type":"com.gigs.portOut.created","project":"acme-mobile","data":{"object":"portOut","id":"pout_x","status":"flying"}}"#.utf8)
        let response = try harness.post(body)
        #expect(response.status == 422)
        let details = response.json?.objectValue?["details"]?.arrayValue ?? []
        let fields = Set(details.compactMap { $0.objectValue?["field"]?.stringValue })
        #expect(fields.contains("data.status"))
        #expect(fields.contains("data.behavior"))
        #expect(fields.contains("specversion"))
        #expect(fields.contains("time"))
    }

    @Test func invalidJSONIs400() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        let response = try harness.post(Array(#"{"object": "event",}"#.utf8))
        #expect(response.status == 400)
        #expect(response.json?.objectValue?["code"] == "invalidJSON")
    }

    @Test func wrongContentTypeIs415() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        let body = Events.portOut("pout_a", status: "initiated")
        let client = try harness.client()
        let headers = [("Content-Type", "text/plain")] + RelayHarness.standardWebhooksHeaders(
            body, secret: RelayHarness.inboundSecret, id: "msg_1")
        let response = try #require(client.request("POST", "/webhooks/t1", headers: headers, body: body))
        #expect(response.status == 415)
        #expect(response.json?.objectValue?["message"] == #"Content-Type "text/plain" is not supported."#)
    }

    /// The cut counts code points, so combining marks, which make a single character however many there are,
    /// are cut too.
    @Test(arguments: [("x", 4000), ("\u{301}", 7000)])
    func longContentTypeIsCutInReply(repeated: String, count: Int) throws {
        let subtype = "a" + String(repeating: repeated, count: count)
        let harness = try RelayHarness()
        defer { harness.finish() }
        let body = Events.portOut("pout_a", status: "initiated")
        let client = try harness.client()
        let value = "text/" + subtype
        let headers = [("Content-Type", value)] + RelayHarness.standardWebhooksHeaders(
            body, secret: RelayHarness.inboundSecret, id: "msg_1")
        let response = try #require(client.request("POST", "/webhooks/t1", headers: headers, body: body))
        #expect(response.status == 415)
        let message = try #require(response.json?.objectValue?["message"]?.stringValue)
        // Compared by scalars: a prefix that ends among combining marks is not a whole character.
        let expectedStart = "Content-Type \"text/".unicodeScalars + subtype.unicodeScalars.prefix(95)
        #expect(message.unicodeScalars.starts(with: expectedStart))
        #expect(message.hasSuffix("...\" (cut to 100 code points) is not supported."))
        #expect(message.utf8.count < 300)
    }

    /// Two Content-Type fields are rejected even when one of them is JSON, whichever comes first.
    @Test(arguments: [["application/json", "text/plain"], ["text/plain", "application/json"], ["application/json", "application/json"]])
    func repeatedContentTypeIs400(values: [String]) throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        let body = Events.portOut("pout_a", status: "initiated")
        let client = try harness.client()
        let headers = values.map { ("Content-Type", $0) } + RelayHarness.standardWebhooksHeaders(
            body, secret: RelayHarness.inboundSecret, id: "msg_1")
        let response = try #require(client.request("POST", "/webhooks/t1", headers: headers, body: body))
        #expect(response.status == 400)
        #expect(response.json?.objectValue?["code"] == "multipleContentTypes")
        #expect(try harness.post(body).status == 202)
    }

    /// Parameters, case and white space around the media type do not matter. Anything else in its place does.
    @Test(arguments: [
        ("application/json", true), ("Application/JSON", true), ("application/json; charset=utf-8", true),
        (" application/json\t;charset=utf-8", true), ("application/cloudevents+json", true),
        ("APPLICATION/CLOUDEVENTS+JSON ; charset=utf-8", true), ("application/jsonx", false),
        ("application/jso", false), ("application/problem+json", false), ("text/json", false), ("", false),
        (";application/json", false), ("application/ json", false), ("applicätion/json", false),
    ])
    func jsonMediaTypes(value: String, isJSON: Bool) {
        #expect(Ingestor.isJSONMediaType(value) == isJSON, "\(value)")
    }

    @Test func missingContentTypeIsNotJSON() {
        #expect(!Ingestor.isJSONMediaType(nil))
    }

    @Test func projectOutsideTenantIs422() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        let response = try harness.post(Events.portOut("pout_a", status: "initiated", project: "other-carrier"))
        #expect(response.status == 422)
        #expect(response.json?.objectValue?["code"] == "projectNotAllowed")
    }

    /// Returns a `.updated` event for `id` in status processing.
    static func updated(_ id: String, eventID: String, project: String = "acme-mobile") -> [UInt8] {
        Array(String(decoding: Events.portOut(id, status: "processing", eventID: eventID, project: project), as: UTF8.self)
            .replacingOccurrences(of: "com.gigs.portOut.processing", with: "com.gigs.portOut.updated")
            .replacingOccurrences(of: #""version":"2024-12-20","#, with: #""version":"2024-12-20","previousData":{"user":"usr_0"},"#).utf8)
    }

    @Test func updatedTypeNeedsAcceptTypes() throws {
        let body = Self.updated("pout_a", eventID: "evt_u")
        let strict = try RelayHarness()
        let rejected = try strict.post(body)
        strict.finish()
        #expect(rejected.status == 422)
        #expect(rejected.json?.objectValue?["code"] == "eventTypeNotAccepted")
        let open = try RelayHarness(tenantExtra: #""acceptTypes": ["com.gigs.portOut.updated"]"#)
        defer { open.finish() }
        #expect(try open.post(body).status == 202)
        #expect(try open.post(body).status == 200)
    }

    @Test func unknownTenantAndPathAre404() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_a", status: "initiated"), tenant: "nobody").status == 404)
        let client = try harness.client()
        #expect(client.request("GET", "/nothing-here")?.status == 404)
    }

    /// A body over the limit gets 413 before its signature can be checked, announced by `Content-Length` or found
    /// while the chunks are read. A POST counts as `tooLarge` for a configured tenant, for the alert that would
    /// otherwise see nothing, and as `unknownTenant` for another. Other methods are no webhooks and count nowhere.
    @Test func oversizedWebhookCountsAsTooLarge() throws {
        let harness = try RelayHarness(extra: #""limits": {"maxBodyBytes": 1024}"#)
        defer { harness.finish() }
        let large = [UInt8](repeating: UInt8(ascii: "x"), count: 2048)
        #expect(try harness.post(large).status == 413)
        #expect(try harness.post(large, tenant: "nobody").status == 413)
        #expect(try harness.client().request("PUT", "/webhooks/t1", body: large)?.status == 413)
        let chunked = try harness.client()
        chunked.send(
            "POST /webhooks/t1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + "Transfer-Encoding: chunked\r\n\r\n800\r\n" + String(repeating: "x", count: 2048) + "\r\n0\r\n\r\n")
        #expect(chunked.readResponse()?.status == 413)
        #expect(try harness.post(Events.portOut("pout_small", status: "initiated")).status == 202)

        let lines = try AdminTests.metricsLines(harness, token: nil)
        #expect(lines.contains(#"portout_webhook_requests_total{tenant="t1",outcome="tooLarge"} 2"#))
        #expect(lines.contains(#"portout_webhook_requests_total{tenant="t1",outcome="accepted"} 1"#))
        #expect(lines.contains(#"portout_webhook_requests_total{tenant="",outcome="unknownTenant"} 1"#))
        #expect(!lines.contains { $0.hasPrefix(#"portout_webhook_requests_total{tenant="nobody""#) })
    }

    @Test func wrongMethodIs405WithAllow() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        let client = try harness.client()
        let response = try #require(client.request("GET", "/webhooks/t1"))
        #expect(response.status == 405)
        #expect(response.header("Allow") == "POST")
        let health = try #require(client.request("DELETE", "/healthz"))
        #expect(health.status == 405)
        #expect(health.header("Allow") == "GET, HEAD")
    }

    @Test func healthAndReadiness() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        let client = try harness.client()
        #expect(client.request("GET", "/healthz")?.json == ["status": "ok"])
        #expect(client.request("GET", "/readyz")?.json == ["status": "ready"])
    }

    @Test func racingTwinsAcceptOnce() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        let body = Events.portOut("pout_race", status: "issued")
        let headers = RelayHarness.standardWebhooksHeaders(body, secret: RelayHarness.inboundSecret, id: "msg_race")
        let clients = try (0..<16).map { _ in try harness.client() }
        var request = "POST /webhooks/t1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        for (name, value) in headers {
            request += "\(name): \(value)\r\n"
        }
        request += "Content-Length: \(body.count)\r\n\r\n"
        let bytes = Array(request.utf8) + body
        // Every request is written before any response is read, so they reach the relay together.
        for client in clients {
            client.send(bytes)
        }
        let statuses = clients.map { $0.readResponse()?.status }
        #expect(statuses.filter { $0 == 202 }.count == 1)
        #expect(statuses.filter { $0 == 200 }.count == 15)
    }

    @Test func restartKeepsDedupe() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_a", status: "initiated")).status == 202)
        #expect(try harness.post(Events.portOut("pout_a", status: "completed")).status == 202)
        try harness.restart()
        #expect(try harness.post(Events.portOut("pout_a", status: "initiated")).status == 200)
        let stale = try harness.post(Events.portOut("pout_a", status: "issued"))
        #expect(stale.status == 202)
        #expect(stale.json?.objectValue?["stale"] == .bool(true))
    }

    @Test func hostileIdentifiersAre422() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        let long = String(repeating: "a", count: 70_000)
        let cases = [
            ("id", Events.portOut("pout_long", status: "initiated", eventID: "evt_" + long)),
            ("data.id", Events.portOut("pout_" + long, status: "initiated")),
            ("id", Events.portOut("pout_crlf", status: "initiated", eventID: "evt_a\\r\\nX-Injected: 1")),
            ("id", Events.portOut("pout_nul", status: "initiated", eventID: "evt_a\\u0000b")),
            ("id", Events.portOut("pout_space", status: "initiated", eventID: "evt_trailing ")),
            ("data.id", Events.portOut(" pout_leading", status: "initiated")),
        ]
        for (field, body) in cases {
            let response = try harness.post(body)
            #expect(response.status == 422, "\(field)")
            let fields = response.json?.objectValue?["details"]?.arrayValue?.compactMap { $0.objectValue?["field"]?.stringValue }
            #expect(fields?.contains(field) == true, "\(field)")
        }
        // The relay is still up.
        #expect(try harness.post(Events.portOut("pout_ok", status: "initiated")).status == 202)
    }

    @Test func staleTwinsReportStale() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_twin", status: "completed")).status == 202)
        let body = Events.portOut("pout_twin", status: "processing")
        let headers = RelayHarness.standardWebhooksHeaders(body, secret: RelayHarness.inboundSecret, id: "msg_twin")
        var request = "POST /webhooks/t1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        for (name, value) in headers {
            request += "\(name): \(value)\r\n"
        }
        request += "Content-Length: \(body.count)\r\n\r\n"
        let clients = try (0..<16).map { _ in try harness.client() }
        for client in clients {
            client.send(Array(request.utf8) + body)
        }
        let receipts = clients.compactMap { $0.readResponse()?.json?.objectValue }
        #expect(receipts.count == 16)
        #expect(receipts.allSatisfy { $0["stale"] == .bool(true) })
    }

    @Test func hostHeaderAndAbsoluteForm() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        let missingHost = try harness.client()
        missingHost.send("GET /healthz HTTP/1.1\r\n\r\n")
        #expect(missingHost.readResponse()?.status == 400)
        let absolute = try harness.client()
        absolute.send("GET http://127.0.0.1/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(absolute.readResponse()?.status == 200)
    }
}
