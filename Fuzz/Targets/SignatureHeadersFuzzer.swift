import PortoutCrypto
import PortoutHTTP

@testable import PortoutCore
@testable import PortoutRelay

// Fuzz target `signature-headers`: the signature header parsers of the three inbound schemes, through
// `SignatureVerifier.verify`. The input is up to four LF-separated parts: a signature header value, a
// `webhook-timestamp` value, a `webhook-id` value and the body. Each scheme first checks the input's own
// headers, which must not crash. It then checks a request with the input's id, timestamp and body and a correct
// signature, which it must accept.

private let toleranceSeconds = 300
/// The relay's clock when the input's timestamp is not a plain decimal number: 2026-01-01T00:00:00Z.
private let defaultNowSeconds = 1_767_225_600
/// A Standard Webhooks secret and a plain one, as during a secret rotation.
private let secrets = [
    Secret(value: "whsec_" + ByteEncoding.base64(Array("fuzz-signing-key-one".utf8)), source: "fuzz"),
    Secret(value: "fuzz-signing-key-two", source: "fuzz"),
]
private let hexHeader = "x-signature"

private func verifier(_ scheme: SignatureScheme) -> SignatureVerifier {
    SignatureVerifier(
        VerifyConfig(scheme: scheme, secrets: secrets, toleranceSeconds: toleranceSeconds, header: hexHeader)
    )
}

private let verifiers = SignatureScheme.allCases.map { ($0, verifier($0)) }

private struct FuzzRequest {
    var signature: String
    var timestamp: String
    var id: String
    var body: [UInt8]

    init(_ bytes: [UInt8]) {
        var parts = bytes.split(separator: 0x0A, maxSplits: 3, omittingEmptySubsequences: false).map(Array.init)
        while parts.count < 4 {
            parts.append([])
        }
        self.signature = String(decoding: parts[0], as: UTF8.self)
        self.timestamp = String(decoding: parts[1], as: UTF8.self)
        self.id = String(decoding: parts[2], as: UTF8.self)
        self.body = parts[3]
    }

    var headers: HTTPHeaders {
        HTTPHeaders([
            (name: "webhook-id", value: self.id),
            (name: "webhook-timestamp", value: self.timestamp),
            (name: "webhook-signature", value: self.signature),
            (name: hexHeader, value: self.signature),
        ])
    }
}

/// Builds headers that sign `request`'s body correctly under `scheme` with the secret at `secretIndex`.
///
/// The timestamp and id are the input's when they are plain (decimal digits, visible ASCII), so the accepted
/// request still depends on the input. The returned clock reading equals the timestamp.
private func signedHeaders(
    _ request: FuzzRequest,
    scheme: SignatureScheme,
    secretIndex: Int
) -> (headers: HTTPHeaders, nowSeconds: Int) {
    let isPlainTimestamp =
        (1...10).contains(request.timestamp.utf8.count)
        && request.timestamp.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    let timestamp = isPlainTimestamp ? request.timestamp : String(defaultNowSeconds)
    let isPlainID = !request.id.isEmpty && request.id.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7E }
    let id = isPlainID ? request.id : "msg_fuzz"
    let key = secrets[secretIndex].keyBytes
    let headers: HTTPHeaders
    switch scheme {
    case .standardWebhooks:
        let signature = WebhookSignature.standardWebhooks(key: key, id: id, timestamp: timestamp, body: request.body)
        headers = HTTPHeaders([
            (name: "webhook-id", value: id),
            (name: "webhook-timestamp", value: timestamp),
            (name: "webhook-signature", value: "v1,\(signature)"),
        ])
    case .timestampedHex:
        let mac = WebhookSignature.timestamped(key: key, timestamp: timestamp, body: request.body)
        headers = HTTPHeaders([(name: hexHeader, value: "t=\(timestamp),v1=\(ByteEncoding.hex(mac))")])
    case .hex:
        let mac = WebhookSignature.plain(key: key, body: request.body)
        let prefix = secretIndex == 0 ? "sha256=" : ""
        headers = HTTPHeaders([(name: hexHeader, value: prefix + ByteEncoding.hex(mac))])
    }
    return (headers, Int(timestamp)!)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSignatureHeaders(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInputBytes(data, size)
    let request = FuzzRequest(bytes)
    let secretIndex = fuzzSplitOffset(bytes) % secrets.count
    for (scheme, verifier) in verifiers {
        _ = verifier.verify(headers: request.headers, body: request.body, nowSeconds: defaultNowSeconds)
        let signed = signedHeaders(request, scheme: scheme, secretIndex: secretIndex)
        let result = verifier.verify(headers: signed.headers, body: request.body, nowSeconds: signed.nowSeconds)
        if case .failure(let failure) = result {
            fatalError(
                "\(scheme.rawValue) rejected a correctly signed request: \(failure) with \(signed.headers.fields)"
            )
        }
    }
    return 0
}
