import PortoutHTTP
import Testing

struct HTTPHeadersTests {
    private static let headers = HTTPHeaders([
        ("Host", "127.0.0.1"), ("webhook-id", "msg_1"), ("Webhook-ID", "msg_2"), ("X-Id", "x"),
        ("content-type", "application/json"), ("WEBHOOK-SIGNATURE", "v1,abc"),
    ])

    /// Names are compared without regard to case, only with fields of their own length, and every field
    /// with the name counts while the first one's value is returned.
    @Test func lookupCountsEveryMatch() {
        let id = Self.headers.lookup("WEBHOOK-id")
        #expect(id.value == "msg_1")
        #expect(id.count == 2)
        #expect(Self.headers.lookup("webhook-signature") == ("v1,abc", 1))
        #expect(Self.headers.lookup("Content-Type") == ("application/json", 1))
        #expect(Self.headers.lookup("webhook-i") == (nil, 0))
        #expect(Self.headers.lookup("webhook-idd") == (nil, 0))
        #expect(Self.headers.lookup("") == (nil, 0))
    }

    @Test func otherLookupsAgree() {
        for name in ["webhook-id", "x-id", "host", "HOST", "missing", "content-typE"] {
            let (value, count) = Self.headers.lookup(name)
            #expect(Self.headers.count(of: name) == count, "\(name)")
            #expect(Self.headers[name] == value, "\(name)")
            #expect(Self.headers.values(name).count == count, "\(name)")
            #expect(Self.headers.values(name).first == value, "\(name)")
        }
        #expect(Self.headers.values("webhook-id") == ["msg_1", "msg_2"])
    }
}
