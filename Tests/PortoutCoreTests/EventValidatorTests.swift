import Foundation
import Testing

@testable import PortoutCore

struct EventValidatorTests {
    static let envelope = """
        {"object":"event","id":"evt_1","type":"com.gigs.portOut.completed","datacontenttype":"application/json",\
        "project":"acme-mobile","source":"https://api.gigs.com","specversion":"1.0","time":"2026-11-02T09:38:11Z",\
        "version":"2024-12-20","data":{"object":"portOut","id":"pout_1","behavior":"portOut",\
        "completedAt":"2026-11-02T10:00:00Z","createdAt":"2026-11-02T08:47:00Z","expiredAt":null,\
        "failureReason":null,"status":"completed","subscription":"sub_1","user":"usr_1"}}
        """

    static func validate(_ text: String) -> Result<ValidatedEvent, ValidationFailure> {
        EventValidator.validate(try! JSONParser.parse(text))
    }

    @Test func validEnvelope() throws {
        let event = try Self.validate(Self.envelope).get()
        #expect(event.kind == .statusChange)
        #expect(event.lifecycleStatus == .completed)
        #expect(event.project == "acme-mobile")
    }

    @Test func typeMustMatchStatus() {
        let text = Self.envelope.replacingOccurrences(of: "portOut.completed", with: "portOut.issued")
        guard case .failure(let failure) = Self.validate(text) else {
            Issue.record("a type that contradicts data.status was accepted")
            return
        }
        #expect(failure.issues.contains { $0.field == "type" || $0.field == "data.status" })
    }

    @Test func invalidTimesAndEnums() {
        let text = Self.envelope.replacingOccurrences(of: "\"2026-11-02T10:00:00Z\"", with: "\"yesterday\"")
            .replacingOccurrences(of: "\"behavior\":\"portOut\"", with: "\"behavior\":\"teleport\"")
        guard case .failure(let failure) = Self.validate(text) else {
            Issue.record("invalid fields were accepted")
            return
        }
        let fields = Set(failure.issues.map(\.field))
        #expect(fields.contains("data.completedAt"))
        #expect(fields.contains("data.behavior"))
    }

    @Test func credentialsEvent() throws {
        let text = """
            {"object":"event","id":"evt_c","type":"com.gigs.portOutCredentials.issued","datacontenttype":"application/json",\
            "project":"acme-mobile","source":"https://api.gigs.com","specversion":"1.0","time":"2026-11-02T09:38:11Z",\
            "version":"2024-12-20","data":{"object":"portOutCredentials","accountNumber":"123","accountPin":null,\
            "expiresAt":"2026-11-09T09:38:11Z","subscription":"sub_1"}}
            """
        let event = try Self.validate(text).get()
        #expect(event.kind == .credentialsIssued)
        #expect(event.lifecycleStatus == nil)
    }

    @Test func duplicateKeysRejected() {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(#"{"a":1,"a":2}"#) }
        // Past the linear search, the set of keys catches a late duplicate as well.
        let many = (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        #expect(throws: JSONParseError.self) { try JSONParser.parse("{\(many),\"k3\":0}") }
        #expect((try? JSONParser.parse("{\(many)}"))?.objectValue?.members.count == 40)
    }

    /// The duplicate check compares fingerprints of the keys as decoded, so a key spelled with escapes is the
    /// same key as its plain spelling, in either order, while distinct keys of one length stay distinct.
    @Test func escapedKeySpellingsAreDuplicates() {
        for text in [#"{"data":1,"d\u0061ta":2}"#, #"{"d\u0061ta":1,"data":2}"#, #"{"\u00e9":1,"é":2}"#,
                     #"{"a\/b":1,"a/b":2}"#]
        {
            #expect(throws: JSONParseError.self, "\(text)") { try JSONParser.parse(text) }
        }
        let distinct = try? JSONParser.parse(#"{"ab":1,"ba":2,"a\u0062c":3,"abd":4,"":5}"#)
        #expect(distinct?.objectValue?.keys == ["ab", "ba", "abc", "abd", ""])
    }

    /// Lookups start where the last one ended, so the same fields in any order must still all be found.
    @Test func fieldsInAnyOrderValidate() throws {
        let envelope = try #require(try JSONParser.parse(Self.envelope).objectValue)
        let data = try #require(envelope["data"]?.objectValue)
        var reordered = JSONObject(envelope.members.reversed())
        reordered["data"] = .object(JSONObject(data.members.reversed()))
        #expect(try EventValidator.validate(.object(reordered)).get() == Self.validate(Self.envelope).get())
        reordered["user"] = nil
        reordered["data"] = .object(JSONObject(data.members.filter { $0.key != "user" }.reversed()))
        guard case .failure(let failure) = EventValidator.validate(.object(reordered)) else {
            Issue.record("an event without data.user was accepted")
            return
        }
        #expect(failure.issues == [ValidationIssue(field: "data.user", message: "is required")])
    }

    @Test func lookupFromAPositionWrapsAround() throws {
        let object = try #require(try JSONParser.parse(#"{"a":1,"b":2,"c":3}"#).objectValue)
        var position = 2
        #expect(object.value(forKey: "a", searchingFrom: &position) == .number(1))
        #expect(position == 1)
        #expect(object.value(forKey: "c", searchingFrom: &position) == .number(3))
        #expect(position == 3)
        #expect(object.value(forKey: "b", searchingFrom: &position) == .number(2))
        #expect(object.value(forKey: "d", searchingFrom: &position) == nil)
        #expect(position == 2)
        position = -5
        #expect(object.value(forKey: "c", searchingFrom: &position) == .number(3))
        var empty = 0
        #expect(JSONObject().value(forKey: "a", searchingFrom: &empty) == nil)
    }

    /// Keys that are canonically equivalent but spelled differently are two keys both to the duplicate check and
    /// to lookup, so a lookup never returns a member under another key's spelling.
    @Test func equivalentKeySpellingsStayDistinct() throws {
        let object = try #require(try JSONParser.parse(#"{"K":1,"\u212A":2,"caf\u00e9":3,"cafe\u0301":4}"#).objectValue)
        #expect(object.members.count == 4)
        #expect(object["K"] == .number(1))
        #expect(object["\u{212A}"] == .number(2))
        #expect(object["caf\u{E9}"] == .number(3))
        #expect(object["cafe\u{301}"] == .number(4))
        var position = 0
        #expect(object.value(forKey: "\u{212A}", searchingFrom: &position) == .number(2))
        #expect(object.value(forKey: "cafe\u{301}", searchingFrom: &position) == .number(4))
    }
}
