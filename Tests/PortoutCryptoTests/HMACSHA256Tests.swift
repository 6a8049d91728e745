import Testing

@testable import PortoutCrypto

struct HMACSHA256Tests {
    /// RFC 4231 test case 2.
    @Test func matchesRFC4231() {
        let mac = HMACSHA256.authenticate(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8))
        #expect(ByteEncoding.hex(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    /// RFC 4231 test case 6: a key longer than the block size is hashed first.
    @Test func longKeyMatchesRFC4231() {
        let key = [UInt8](repeating: 0xAA, count: 131)
        let message = Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)
        #expect(
            ByteEncoding.hex(HMACSHA256.authenticate(key: key, message: message))
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    @Test func partsEqualWholeMessage() {
        let key = Array("key".utf8)
        let whole = HMACSHA256.authenticate(key: key, message: Array("hello world".utf8))
        let parts = Array("hello ".utf8).withUnsafeBytes { first in
            Array("world".utf8).withUnsafeBytes { second in
                HMACSHA256.authenticate(key: key, parts: [first, second])
            }
        }
        #expect(parts == whole)
    }

    /// The value that the `standardwebhooks` Python package (1.3.0) computes for this input.
    @Test func standardWebhooksSignature() {
        let key = Array("test-key-bytes-for-signing".utf8)
        let signature = WebhookSignature.standardWebhooks(
            key: key, id: "msg_1", timestamp: "1700000000", body: Array(#"{"a":1}"#.utf8))
        #expect(signature == "mrXUwJkzreiIJ5z2FN1WDiL++ChT3UvcuFxbU+X5CVQ=")
    }

    @Test func constantTimeEquality() {
        #expect(ConstantTime.equals([1, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2, 4]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2]))
        #expect(ConstantTime.equals([], []))
    }

    @Test func hexAndBase64RoundTrip() {
        let bytes: [UInt8] = [0, 1, 0xAB, 0xFF]
        #expect(ByteEncoding.decodeHex(ByteEncoding.hex(bytes)[...]) == bytes)
        #expect(ByteEncoding.decodeHex("ABff") == [0xAB, 0xFF])
        #expect(ByteEncoding.decodeHex("abc") == nil)
        #expect(ByteEncoding.decodeHex("zz") == nil)
        #expect(ByteEncoding.decodeBase64(ByteEncoding.base64(bytes)[...]) == bytes)
    }
}
