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

    /// Keys that are canonically equivalent but spelled differently are two keys both to the duplicate check and
    /// to lookup, so a lookup never returns a member under another key's spelling.
    @Test func equivalentKeySpellingsStayDistinct() throws {
        let object = try #require(try JSONParser.parse(#"{"K":1,"\u212A":2,"caf\u00e9":3,"cafe\u0301":4}"#).objectValue)
        #expect(object.members.count == 4)
        #expect(object["K"] == .number(1))
        #expect(object["\u{212A}"] == .number(2))
        #expect(object["caf\u{E9}"] == .number(3))
        #expect(object["cafe\u{301}"] == .number(4))
    }
}
