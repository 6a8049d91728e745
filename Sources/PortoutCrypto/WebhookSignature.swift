/// The signed content and signature text of the three webhook signature schemes.
///
/// Inbound verification and outbound signing both build on these, so the relay signs exactly what it checks.
public enum WebhookSignature {
    /// Standard Webhooks: base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`, without the `v1,` prefix.
    public static func standardWebhooks(key: [UInt8], id: String, timestamp: String, body: [UInt8]) -> String {
        ByteEncoding.base64(self.standardWebhooksMAC(key: key, id: id, timestamp: timestamp, body: body))
    }

    /// The raw MAC behind `standardWebhooks`, for comparing with decoded signatures.
    public static func standardWebhooksMAC(key: [UInt8], id: String, timestamp: String, body: [UInt8]) -> [UInt8] {
        self.timestamped(key: key, timestamp: "\(id).\(timestamp)", body: body)
    }

    /// Timestamped hex: HMAC-SHA256 over `{timestamp}.{body}`, as raw bytes. Standard Webhooks signs the same
    /// shape with `{id}.{timestamp}` in the timestamp's place.
    public static func timestamped(key: [UInt8], timestamp: String, body: [UInt8]) -> [UInt8] {
        let prefix = Array("\(timestamp).".utf8)
        return prefix.withUnsafeBytes { prefixBytes in
            body.withUnsafeBytes { bodyBytes in
                HMACSHA256.authenticate(key: key, parts: [prefixBytes, bodyBytes])
            }
        }
    }

    /// Plain hex: HMAC-SHA256 over the body alone, as raw bytes.
    public static func plain(key: [UInt8], body: [UInt8]) -> [UInt8] {
        HMACSHA256.authenticate(key: key, message: body)
    }
}
