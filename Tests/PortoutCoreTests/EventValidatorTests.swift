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
    }
}
