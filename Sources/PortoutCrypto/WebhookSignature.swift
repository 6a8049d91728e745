/// The signed content and signature text of the three webhook signature schemes.
///
/// Inbound verification and outbound signing both build on these, so the relay signs exactly what it checks.
/// Each function takes the key as raw bytes, which sets it up for one MAC, or as an `HMACKey` prepared once.
public enum WebhookSignature {
    /// Standard Webhooks: base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`, without the `v1,` prefix.
    public static func standardWebhooks(key: [UInt8], id: String, timestamp: String, body: [UInt8]) -> String {
        self.standardWebhooks(key: HMACKey(key), id: id, timestamp: timestamp, body: body)
    }

    public static func standardWebhooks(key: HMACKey, id: String, timestamp: String, body: [UInt8]) -> String {
        ByteEncoding.base64(self.standardWebhooksMAC(key: key, id: id, timestamp: timestamp, body: body))
    }

    /// Returns a `webhook-signature` value with one `v1,` signature for each key, in order, separated by spaces.
    public static func standardWebhooksHeader(keys: [HMACKey], id: String, timestamp: String, body: [UInt8]) -> String {
        var value = ""
        for key in keys {
            value += (value.isEmpty ? "v1," : " v1,") + self.standardWebhooks(key: key, id: id, timestamp: timestamp, body: body)
        }
        return value
    }

    /// The raw MAC behind `standardWebhooks`, for comparing with decoded signatures.
    public static func standardWebhooksMAC(key: [UInt8], id: String, timestamp: String, body: [UInt8]) -> [UInt8] {
        self.standardWebhooksMAC(key: HMACKey(key), id: id, timestamp: timestamp, body: body)
    }

    public static func standardWebhooksMAC(
        key: HMACKey, id: some StringProtocol, timestamp: some StringProtocol, body: [UInt8]
    ) -> [UInt8] {
        var prefix: [UInt8] = []
        prefix.reserveCapacity(id.utf8.count + timestamp.utf8.count + 2)
        prefix.append(contentsOf: id.utf8)
        prefix.append(UInt8(ascii: "."))
        prefix.append(contentsOf: timestamp.utf8)
        prefix.append(UInt8(ascii: "."))
        return self.mac(key: key, prefix: prefix, body: body)
    }

    /// Timestamped hex: HMAC-SHA256 over `{timestamp}.{body}`, as raw bytes. Standard Webhooks signs the same
    /// shape with `{id}.{timestamp}` in the timestamp's place.
    public static func timestamped(key: [UInt8], timestamp: String, body: [UInt8]) -> [UInt8] {
        self.timestamped(key: HMACKey(key), timestamp: timestamp, body: body)
    }

    public static func timestamped(key: HMACKey, timestamp: some StringProtocol, body: [UInt8]) -> [UInt8] {
        var prefix: [UInt8] = []
        prefix.reserveCapacity(timestamp.utf8.count + 1)
        prefix.append(contentsOf: timestamp.utf8)
        prefix.append(UInt8(ascii: "."))
        return self.mac(key: key, prefix: prefix, body: body)
    }

    /// Plain hex: HMAC-SHA256 over the body alone, as raw bytes.
    public static func plain(key: [UInt8], body: [UInt8]) -> [UInt8] {
        HMACKey(key).authenticate(message: body)
    }

    public static func plain(key: HMACKey, body: [UInt8]) -> [UInt8] {
        key.authenticate(message: body)
    }

    private static func mac(key: HMACKey, prefix: [UInt8], body: [UInt8]) -> [UInt8] {
        prefix.withUnsafeBytes { prefixBytes in
            body.withUnsafeBytes { bodyBytes in
                key.authenticate(parts: [prefixBytes, bodyBytes])
            }
        }
    }
}
