import Foundation
import PortoutCore
import PortoutTestSupport
import Testing

@testable import PortoutRelay

@Suite(.serialized)
struct PortOutReadAPITests {
    static let key = "read-key-t1-0123456789"
    static let otherKey = "read-key-t2-0123456789"

    /// Tenant t1 owns acme-mobile and brit-tel; tenant t2 owns other-carrier.
    static func harness() throws -> RelayHarness {
        try RelayHarness(
            tenantsJSON: """
                [{"id": "t1", "projects": ["acme-mobile", "brit-tel"], "apiKeys": ["\(Self.key)"],
                  "verify": {"secrets": ["\(RelayHarness.inboundSecret)"]}},
                 {"id": "t2", "projects": ["other-carrier"], "apiKeys": ["\(Self.otherKey)"],
                  "verify": {"secrets": ["\(RelayHarness.inboundSecret)"]}}]
                """)
    }

    static func event(_ id: String, status: String, createdMinute: Int, subscription: String = "sub_1") -> [UInt8] {
        let created = String(format: "2026-11-02T%02d:%02d:00Z", createdMinute / 60, createdMinute % 60)
        let text = String(decoding: Events.portOut(id, status: status), as: UTF8.self)
            .replacingOccurrences(of: "\"createdAt\":\"2026-11-02T08:47:00Z\"", with: "\"createdAt\":\"\(created)\"")
            .replacingOccurrences(of: "\"subscription\":\"sub_1\"", with: "\"subscription\":\"\(subscription)\"")
        return Array(text.utf8)
    }

    static func get(_ harness: RelayHarness, _ target: String, key: String? = PortOutReadAPITests.key)
        throws -> LoopbackClient.Response
    {
        let client = try harness.client()
        let headers = key.map { [("Authorization", "Bearer \($0)")] } ?? []
        return try #require(client.request("GET", target, headers: headers))
    }

    static func page(_ response: LoopbackClient.Response) -> (ids: [String], after: String?, before: String?) {
        let object = response.json?.objectValue
        let ids = object?["items"]?.arrayValue?.compactMap { $0.objectValue?["id"]?.stringValue } ?? []
        return (ids, object?["moreItemsAfter"]?.stringValue, object?["moreItemsBefore"]?.stringValue)
    }

    @Test func retrieveReturnsLatestStatus() throws {
        let harness = try Self.harness()
        defer { harness.finish() }
        #expect(try harness.post(Self.event("pout_1", status: "initiated", createdMinute: 1)).status == 202)
        #expect(try harness.post(Self.event("pout_1", status: "issued", createdMinute: 1)).status == 202)
        // A stale status never replaces a later one.
        #expect(try harness.post(Self.event("pout_1", status: "processing", createdMinute: 1)).status == 202)
        let response = try Self.get(harness, "/projects/acme-mobile/portOuts/pout_1")
        #expect(response.status == 200)
        let object = try #require(response.json?.objectValue)
        #expect(object["object"] == "portOut")
        #expect(object["status"] == "issued")
        #expect(object.keys == ["object", "id", "behavior", "completedAt", "createdAt", "expiredAt", "failureReason",
                                "status", "subscription", "user"])
        #expect(try Self.get(harness, "/projects/acme-mobile/portOuts/pout_none").status == 404)
    }

    /// Objects read once are kept in memory by journal location, so a client that polls must still see each
    /// status as soon as it is accepted.
    @Test func pollingSeesEachNewStatus() throws {
        let harness = try Self.harness()
        defer { harness.finish() }
        #expect(try harness.post(Self.event("pout_2", status: "initiated", createdMinute: 2)).status == 202)
        for status in ["initiated", "processing", "issued", "completed"] {
            #expect(try harness.post(Self.event("pout_1", status: status, createdMinute: 1)).status == 202)
            for _ in 0..<2 {
                let list = try Self.get(harness, "/projects/acme-mobile/portOuts?status=initiated,processing,issued,completed")
                let items = list.json?.objectValue?["items"]?.arrayValue?.compactMap(\.objectValue) ?? []
                #expect(items.map { $0["id"] } == ["pout_2", "pout_1"])
                #expect(items.map { $0["status"] } == ["initiated", .string(status)])
                let retrieved = try Self.get(harness, "/projects/acme-mobile/portOuts/pout_1")
                #expect(retrieved.json?.objectValue?["status"] == .string(status))
            }
        }
    }

    /// A port out's `data` may carry extra fields up to the body limit, so large objects are read from the journal
    /// each time instead of being kept in memory.
    @Test func largeObjectsNotKept() throws {
        let harness = try Self.harness()
        defer { harness.finish() }
        let padding = String(repeating: "x", count: PortOutStore.maxRecentObjectBytes)
        let large = String(decoding: Self.event("pout_large", status: "initiated", createdMinute: 1), as: UTF8.self)
            .replacingOccurrences(of: "\"subscription\":", with: "\"padding\":\"\(padding)\",\"subscription\":")
        #expect(try harness.post(Array(large.utf8)).status == 202)
        #expect(try harness.post(Self.event("pout_small", status: "initiated", createdMinute: 2)).status == 202)
        for _ in 0..<2 {
            let object = try Self.get(harness, "/projects/acme-mobile/portOuts/pout_large").json?.objectValue
            #expect(object?["padding"]?.stringValue == padding)
            #expect(try Self.get(harness, "/projects/acme-mobile/portOuts/pout_small").status == 200)
        }
        #expect(harness.relay?.store.keptObjectCount == 1)
    }

    @Test func authAndScoping() throws {
        let harness = try Self.harness()
        defer { harness.finish() }
        #expect(try harness.post(Self.event("pout_1", status: "initiated", createdMinute: 1)).status == 202)
        let missing = try Self.get(harness, "/projects/acme-mobile/portOuts", key: nil)
        #expect(missing.status == 401)
        #expect(missing.json?.objectValue?["type"] == "unauthorized")
        #expect(try Self.get(harness, "/projects/acme-mobile/portOuts", key: "wrong-key-0123456789").status == 401)
        // Another tenant's key sees neither the project nor the port out: 404 as for a project that is not there.
        let foreign = try Self.get(harness, "/projects/acme-mobile/portOuts/pout_1", key: Self.otherKey)
        #expect(foreign.status == 404)
        let unknown = try Self.get(harness, "/projects/no-such-project/portOuts/pout_1", key: Self.otherKey)
        #expect(unknown.status == 404)
        #expect(foreign.json?.objectValue?["code"] == unknown.json?.objectValue?["code"])
        #expect(foreign.json?.objectValue?["message"] == "No project acme-mobile.")
        #expect(try Self.get(harness, "/projects/other-carrier/portOuts", key: Self.otherKey).status == 200)
    }

    /// Each 401 names the Bearer scheme in `WWW-Authenticate`, and the token may follow the scheme after
    /// several spaces.
    @Test func bearerChallengeAndSpacing() throws {
        let harness = try Self.harness()
        defer { harness.finish() }
        let target = "/projects/acme-mobile/portOuts"
        // A request without a Bearer token gets a hint on how to send one.
        let cases: [(authorization: String?, hasHint: Bool)] = [
            (nil, true), ("", true), ("Basic dXNlcjpwYXNz", true), ("Bearer", true),
            ("Bearer wrong-key-0123456789", false),
        ]
        for (authorization, hasHint) in cases {
            let client = try harness.client()
            let headers = authorization.map { [("Authorization", $0)] } ?? []
            let response = try #require(client.request("GET", target, headers: headers))
            #expect(response.status == 401)
            #expect(response.header("WWW-Authenticate")?.hasPrefix("Bearer realm=\"portout-relay\"") == true)
            // Only a Bearer token that was sent and is wrong gets an error code in the challenge.
            #expect(response.header("WWW-Authenticate")?.contains("invalid_token") == !hasHint)
            #expect((response.json?.objectValue?["hint"] != nil) == hasHint)
        }
        let client = try harness.client()
        #expect(client.request("GET", target, headers: [("Authorization", "Bearer   \(Self.key)")])?.status == 200)
    }

    /// A forwarded call without a valid key for the project is rejected before its body is read, so an
    /// unauthenticated client cannot make the relay take a body, and the connection closes.
    @Test func keyCheckedBeforeBody() throws {
        let harness = try Self.harness()
        defer { harness.finish() }
        for (key, status) in [(nil, 401), ("wrong-key-0123456789", 401), (Self.otherKey, 404)] {
            let client = try harness.client()
            let authorization = key.map { "Authorization: Bearer \($0)\r\n" } ?? ""
            // The body is announced and never sent.
            client.send(
                "POST /projects/acme-mobile/portOuts HTTP/1.1\r\nHost: x\r\n\(authorization)"
                    + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
            #expect(client.readResponse()?.status == status)
            #expect(client.isClosedByServer())
        }
    }

    @Test func invalidParametersAre422() throws {
        let harness = try Self.harness()
        defer { harness.finish() }
        for target in [
            "/projects/acme-mobile/portOuts?limit=201", "/projects/acme-mobile/portOuts?limit=-1",
            "/projects/acme-mobile/portOuts?limit=ten", "/projects/acme-mobile/portOuts?status=lost",
            "/projects/acme-mobile/portOuts?after=a&before=b", "/projects/acme-mobile/portOuts?after=pout_missing",
            "/projects/acme-mobile/portOuts?subscription=%ffx", "/projects/acme-mobile/portOuts?status=completed%zz",
            "/projects/acme-mobile/portOuts?limit=5&limit=50",
        ] {
            let response = try Self.get(harness, target)
            #expect(response.status == 422, "\(target)")
            #expect(response.json?.objectValue?["details"]?.arrayValue?.isEmpty == false, "\(target)")
        }
        let combined = try Self.get(harness, "/projects/acme-mobile/portOuts?after=a&before=b")
        #expect(combined.json?.objectValue?["details"]?.arrayValue?.first?.objectValue?["field"] == "before")
        let repeated = try Self.get(harness, "/projects/acme-mobile/portOuts?limit=5&limit=50")
        let issue = repeated.json?.objectValue?["details"]?.arrayValue?.first?.objectValue
        #expect(issue?["field"] == "limit")
        #expect(issue?["message"] == "is given more than once")
    }

    /// 250 port outs with mixed statuses, paged forward to the end and back to the start.
    @Test func pagingForwardAndBackward() throws {
        let harness = try Self.harness()
        defer { harness.finish() }
        let statuses = ["initiated", "processing", "issued", "completed", "failed"]
        var expectedActive: [String] = []
        for index in 0..<250 {
            let id = String(format: "pout_%03d", index)
            let status = statuses[index % statuses.count]
            // createdAt repeats every 100 port outs, so ties are ordered by id.
            #expect(try harness.post(Self.event(id, status: status, createdMinute: index % 100)).status == 202)
            if ["initiated", "processing", "issued"].contains(status) {
                expectedActive.append(id)
            }
        }
        expectedActive.sort { (Int($0.suffix(3))! % 100, $0) > (Int($1.suffix(3))! % 100, $1) }

        var forward: [String] = []
        var cursor: String?
        var pages: [[String]] = []
        repeat {
            let target = "/projects/acme-mobile/portOuts?limit=20" + (cursor.map { "&after=\($0)" } ?? "")
            let page = Self.page(try Self.get(harness, target))
            forward += page.ids
            pages.append(page.ids)
            cursor = page.after
            if pages.count > 1 {
                #expect(page.before == page.ids.first)
            }
        } while cursor != nil && pages.count < 50
        #expect(forward == expectedActive)
        #expect(Set(forward).count == forward.count)

        var backward: [String] = []
        cursor = pages.last?.first
        backward = pages.last ?? []
        while let before = cursor {
            let page = Self.page(try Self.get(harness, "/projects/acme-mobile/portOuts?limit=20&before=\(before)"))
            backward = page.ids + backward
            cursor = page.before
        }
        #expect(backward == expectedActive)

        let all = Self.page(try Self.get(harness, "/projects/acme-mobile/portOuts?limit=200&status=completed,failed"))
        #expect(all.ids.count == 100)
        #expect(all.after == nil)
        let bySubscription = try Self.get(harness, "/projects/acme-mobile/portOuts?subscription=sub_other")
        #expect(Self.page(bySubscription).ids.isEmpty)
        let empty = Self.page(try Self.get(harness, "/projects/brit-tel/portOuts"))
        #expect(empty.ids.isEmpty)
    }

    @Test func subscriptionFilterAndRestart() throws {
        let harness = try Self.harness()
        defer { harness.finish() }
        #expect(try harness.post(Self.event("pout_a", status: "initiated", createdMinute: 1, subscription: "sub_a")).status == 202)
        #expect(try harness.post(Self.event("pout_b", status: "issued", createdMinute: 2, subscription: "sub_b")).status == 202)
        try harness.restart()
        let page = Self.page(try Self.get(harness, "/projects/acme-mobile/portOuts?subscription=sub_b"))
        #expect(page.ids == ["pout_b"])
        let retrieved = try Self.get(harness, "/projects/acme-mobile/portOuts/pout_a")
        #expect(retrieved.json?.objectValue?["subscription"] == "sub_a")
    }
}
