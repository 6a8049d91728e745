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

    /// The test vectors of RFC 4648 section 10, both ways.
    @Test(arguments: [
        ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ])
    func base64MatchesRFC4648(_ plain: String, _ encoded: String) {
        #expect(ByteEncoding.base64(Array(plain.utf8)) == encoded)
        #expect(ByteEncoding.decodeBase64(encoded[...]) == Array(plain.utf8))
    }

    @Test(arguments: ["QQ", "QUI", "QU=D", "====", "Q===", "QQ==QQ==", "QUJD\n", "QU JD", "-_8="])
    func malformedBase64Rejected(_ text: String) {
        #expect(ByteEncoding.decodeBase64(text[...]) == nil)
    }

    @Test func base64RoundTripsEveryByte() {
        for count in 0..<70 {
            let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 * 37 + count) }
            #expect(ByteEncoding.decodeBase64(ByteEncoding.base64(bytes)[...]) == bytes)
        }
        let all = (0...255).map { UInt8($0) }
        #expect(ByteEncoding.decodeBase64(ByteEncoding.base64(all)[...]) == all)
    }

    /// A prepared key gives the same MAC as a one-off one, for many messages and from several threads at once,
    /// since every call starts from a copy of the shared template context.
    @Test func preparedKeyMatchesOneOffFromManyThreads() async {
        let keyBytes = Array("prepared-key".utf8)
        let key = HMACKey(keyBytes)
        let messages = (0..<64).map { Array("message \($0) ".utf8) + [UInt8](repeating: UInt8($0), count: $0 * 17) }
        let expected = messages.map { HMACSHA256.authenticate(key: keyBytes, message: $0) }
        await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    messages.indices.allSatisfy { key.authenticate(message: messages[$0]) == expected[$0] }
                }
            }
            for await matched in group {
                #expect(matched)
            }
        }
    }

    @Test func sha256MatchesKnownDigest() {
        #expect(
            ByteEncoding.hex(SHA256Digest.hash(Array("abc".utf8)))
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            ByteEncoding.hex(SHA256Digest.hash([]))
                == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }
}
