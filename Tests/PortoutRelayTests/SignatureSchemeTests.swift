import Foundation
import PortoutCore
import PortoutCrypto
import PortoutTestSupport
import Testing

@testable import PortoutRelay

/// Each inbound scheme with valid, tampered, expired and rotated-secret input.
@Suite(.serialized)
struct SignatureSchemeTests {
    static let oldSecret = "whsec_b2xkLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdA=="
    static var now: Int { Int(Date().timeIntervalSince1970) }

    static func key(_ secret: String) -> [UInt8] {
        Secret(value: secret, source: "test").keyBytes
    }

    @Test func standardWebhooksCases() throws {
        let harness = try RelayHarness(
            verify: #"{"scheme": "standard-webhooks", "secrets": ["\#(RelayHarness.inboundSecret)", "\#(Self.oldSecret)"], "toleranceSeconds": 60}"#)
        defer { harness.finish() }
        let body = Events.portOut("pout_sw", status: "initiated")
        let tampered = Array(String(decoding: body, as: UTF8.self).replacingOccurrences(of: "sub_1", with: "sub_2").utf8)
        // Valid with the old secret of a rotation, and with the svix- header spelling.
        let old = RelayHarness.standardWebhooksHeaders(body, secret: Self.oldSecret, id: "msg_1")
        #expect(try harness.post(body, headers: old).status == 202)
        let svix = RelayHarness.standardWebhooksHeaders(body, secret: RelayHarness.inboundSecret, id: "msg_1")
            .map { ($0.0.replacingOccurrences(of: "webhook-", with: "svix-"), $0.1) }
        #expect(try harness.post(body, headers: svix).status == 200)
        // Several signatures in one header: one match is enough.
        var several = RelayHarness.standardWebhooksHeaders(body, secret: RelayHarness.inboundSecret, id: "msg_1")
        several[2].1 = "v1,AAAA " + several[2].1
        #expect(try harness.post(body, headers: several).status == 200)

        let wrong = try harness.post(tampered, headers: RelayHarness.standardWebhooksHeaders(body, secret: RelayHarness.inboundSecret, id: "msg_1"))
        #expect(wrong.status == 401)
        #expect(wrong.json?.objectValue?["code"] == "signatureInvalid")
        let unknownSecret = RelayHarness.standardWebhooksHeaders(body, secret: "whsec_c29tZW9uZS1lbHNl", id: "msg_1")
        #expect(try harness.post(body, headers: unknownSecret).status == 401)
        let expired = RelayHarness.standardWebhooksHeaders(
            body, secret: RelayHarness.inboundSecret, id: "msg_1", timestamp: Self.now - 600)
        let expiredResponse = try harness.post(body, headers: expired)
        #expect(expiredResponse.status == 401)
        #expect(expiredResponse.json?.objectValue?["code"] == "timestampOutOfRange")
        #expect(expiredResponse.json?.objectValue?["hint"]?.stringValue?.contains("clock") == true)
        let future = RelayHarness.standardWebhooksHeaders(
            body, secret: RelayHarness.inboundSecret, id: "msg_1", timestamp: Self.now + 600)
        #expect(try harness.post(body, headers: future).status == 401)
        // The largest timestamp is out of range, not an overflow. A negative one has a sign, so it is malformed.
        for (extreme, code) in [("9223372036854775807", "timestampOutOfRange"), ("-9223372036854775808", "signatureInvalid")] {
            let overflowing = [("webhook-id", "msg_1"), ("webhook-timestamp", extreme), ("webhook-signature", "v1,AAAA")]
            let response = try harness.post(body, headers: overflowing)
            #expect(response.status == 401)
            #expect(response.json?.objectValue?["code"] == .string(code), "\(extreme)")
        }
        let missing = try harness.post(body, headers: [])
        #expect(missing.status == 401)
        #expect(missing.json?.objectValue?["code"] == "signatureMissing")
    }

    /// A `webhook-signature` value is a list separated by spaces: runs of spaces, other versions and entries
    /// that are not base64 are passed over, and only a list with no `v1,` entry at all is malformed.
    @Test func signatureListEntries() throws {
        let harness = try RelayHarness(verify: #"{"secrets": ["\#(RelayHarness.inboundSecret)"]}"#)
        defer { harness.finish() }
        let body = Events.portOut("pout_list", status: "initiated")
        let valid = RelayHarness.standardWebhooksHeaders(body, secret: RelayHarness.inboundSecret, id: "msg_1")
        let signature = valid[2].1
        let cases: [(String, Int, String?)] = [
            ("  v2,AAAA   v1,!!!!  \(signature)  ", 202, nil),
            ("\(signature) v1,", 200, nil),
            ("v1,", 401, "No signature matches the body."),
            ("v1,AAA", 401, "The webhook-signature header is malformed."),
            ("v2,\(signature.dropFirst(3)) v1", 401, "The webhook-signature header is malformed."),
            (" ", 401, "The webhook-signature header is malformed."),
            (String(signature.dropFirst(3)), 401, "The webhook-signature header is malformed."),
        ]
        for (value, status, message) in cases {
            let response = try harness.post(body, headers: [valid[0], valid[1], ("webhook-signature", value)])
            #expect(response.status == status, "\(value)")
            if let message {
                #expect(response.json?.objectValue?["message"] == .string(message), "\(value)")
            }
        }
    }

    /// A repeated signature header is rejected even when one of its copies is valid, since a proxy in front may
    /// take the other one. A timestamp with a plus sign is rejected even when the signature covers it.
    @Test func repeatedHeadersAndPlusTimestampRejected() throws {
        let harness = try RelayHarness(verify: #"{"secrets": ["\#(RelayHarness.inboundSecret)"]}"#)
        defer { harness.finish() }
        let body = Events.portOut("pout_repeat", status: "initiated")
        let valid = RelayHarness.standardWebhooksHeaders(body, secret: RelayHarness.inboundSecret, id: "msg_1")
        for index in valid.indices {
            let response = try harness.post(body, headers: valid + [valid[index]])
            #expect(response.status == 401, "\(valid[index].0)")
            #expect(response.json?.objectValue?["message"] == .string("The request has more than one \(valid[index].0) header."))
        }
        let svix = valid.map { ($0.0.replacingOccurrences(of: "webhook-", with: "svix-"), $0.1) }
        // Both spellings with the same values are what some senders send; a repeat of either is not.
        let both = try harness.post(body, headers: valid + svix)
        #expect(both.status == 202)
        let svixRepeated = try harness.post(body, headers: valid + [svix[0], ("svix-id", "msg_2")])
        #expect(svixRepeated.status == 401)
        #expect(svixRepeated.json?.objectValue?["message"] == "The request has more than one svix-id header.")
        for index in svix.indices {
            var conflicting = svix
            conflicting[index].1 += "0"
            let response = try harness.post(body, headers: valid + conflicting)
            #expect(response.status == 401, "\(svix[index].0)")
            let field = svix[index].0.dropFirst("svix-".count)
            #expect(response.json?.objectValue?["message"] == .string("The webhook-\(field) and svix-\(field) headers differ."))
        }
        let plusSigned = RelayHarness.standardWebhooksHeaders(
            body, secret: RelayHarness.inboundSecret, id: "msg_1", timestampText: "+\(Self.now)")
        let plusResponse = try harness.post(body, headers: plusSigned)
        #expect(plusResponse.status == 401)
        #expect(plusResponse.json?.objectValue?["message"] == "The webhook-timestamp header is malformed.")
        #expect(try harness.post(body, headers: valid).status == 200)
    }

    @Test func invalidUTF8IdRejected() throws {
        let harness = try RelayHarness(verify: #"{"secrets": ["\#(RelayHarness.inboundSecret)"]}"#)
        defer { harness.finish() }
        let body = Events.portOut("pout_utf8", status: "initiated")
        // Signed over the text the id reads as, with U+FFFD in place of the invalid byte 0xFF that is sent.
        let signed = RelayHarness.standardWebhooksHeaders(body, secret: RelayHarness.inboundSecret, id: "msg_\u{FFFD}")
        var request = Array("POST /webhooks/t1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n".utf8)
        request += Array("webhook-id: msg_".utf8) + [0xFF] + Array("\r\n".utf8)
        for (name, value) in signed.dropFirst() {
            request += Array("\(name): \(value)\r\n".utf8)
        }
        request += Array("Content-Length: \(body.count)\r\n\r\n".utf8) + body
        let client = try harness.client()
        client.send(request)
        let response = try #require(client.readResponse())
        #expect(response.status == 401)
        #expect(response.json?.objectValue?["message"] == "The webhook-id header is malformed.")
    }

    static func timestampedHeader(_ body: [UInt8], secrets: [String], timestamp: Int) -> String {
        let signatures = secrets.map {
            "v1=" + ByteEncoding.hex(WebhookSignature.timestamped(key: Self.key($0), timestamp: String(timestamp), body: body))
        }
        return (["t=\(timestamp)"] + signatures).joined(separator: ",")
    }

    @Test func timestampedHexCases() throws {
        let harness = try RelayHarness(
            verify: #"{"scheme": "timestamped-hex", "header": "Carrier-Signature", "secrets": ["plain-text-secret", "\#(Self.oldSecret)"]}"#)
        defer { harness.finish() }
        let body = Events.portOut("pout_th", status: "initiated")
        let valid = Self.timestampedHeader(body, secrets: ["plain-text-secret"], timestamp: Self.now)
        #expect(try harness.post(body, headers: [("Carrier-Signature", valid)]).status == 202)
        let rotated = Self.timestampedHeader(body, secrets: ["retired", Self.oldSecret], timestamp: Self.now)
        #expect(try harness.post(body, headers: [("Carrier-Signature", rotated)]).status == 200)
        let tampered = body + Array(" ".utf8)
        #expect(try harness.post(tampered, headers: [("Carrier-Signature", valid)]).status == 401)
        let expired = Self.timestampedHeader(body, secrets: ["plain-text-secret"], timestamp: Self.now - 301)
        let expiredResponse = try harness.post(body, headers: [("Carrier-Signature", expired)])
        #expect(expiredResponse.status == 401)
        #expect(expiredResponse.json?.objectValue?["code"] == "timestampOutOfRange")
        #expect(try harness.post(body, headers: [("Carrier-Signature", "v1=abcd")]).status == 401)
        let overflowing = "t=-9223372036854775808,v1=00"
        #expect(try harness.post(body, headers: [("Carrier-Signature", overflowing)]).status == 401)
        // A second t= is refused even when the first one is signed.
        let twoTimestamps = try harness.post(body, headers: [("Carrier-Signature", valid + ",t=1")])
        #expect(twoTimestamps.status == 401)
        #expect(twoTimestamps.json?.objectValue?["message"] == "The carrier-signature header, which has more than one t=, is malformed.")
        let repeatedHeader = try harness.post(body, headers: [("Carrier-Signature", valid), ("Carrier-Signature", valid)])
        #expect(repeatedHeader.status == 401)
        // A v1= value that is not 32 bytes is malformed, as in the hex scheme.
        let short = try harness.post(body, headers: [("Carrier-Signature", "t=\(Self.now),v1=abcd")])
        #expect(short.status == 401)
        #expect(short.json?.objectValue?["message"] == "The carrier-signature header's v1= signature is malformed.")
    }

    @Test func hexCases() throws {
        let harness = try RelayHarness(
            verify: #"{"scheme": "hex", "header": "X-Hub-Signature-256", "secrets": ["hex-secret", "next-secret"]}"#)
        defer { harness.finish() }
        let body = Events.portOut("pout_hex", status: "initiated")
        let mac = ByteEncoding.hex(WebhookSignature.plain(key: Array("hex-secret".utf8), body: body))
        #expect(try harness.post(body, headers: [("X-Hub-Signature-256", "sha256=" + mac)]).status == 202)
        #expect(try harness.post(body, headers: [("X-Hub-Signature-256", mac.uppercased())]).status == 200)
        let rotated = ByteEncoding.hex(WebhookSignature.plain(key: Array("next-secret".utf8), body: body))
        #expect(try harness.post(body, headers: [("X-Hub-Signature-256", rotated)]).status == 200)
        let tampered = body + Array("\n".utf8)
        #expect(try harness.post(tampered, headers: [("X-Hub-Signature-256", mac)]).status == 401)
        #expect(try harness.post(body, headers: [("X-Hub-Signature-256", "sha256=zz")]).status == 401)
        #expect(try harness.post(body, headers: []).status == 401)
        // An empty or short value cannot be an HMAC-SHA256, so it is malformed, not a signature that differs.
        for value in ["", "sha256=", String(mac.prefix(62))] {
            let rejected = try harness.post(body, headers: [("X-Hub-Signature-256", value)])
            #expect(rejected.status == 401)
            #expect(rejected.json?.objectValue?["message"] == "The x-hub-signature-256 header is malformed.", "\(value)")
        }
    }
}
