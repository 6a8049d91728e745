import PortoutCore
import Testing

struct FNV1aTests {
    /// The published FNV-1a values for the empty string and "a", and a bytewise reference for a longer text.
    @Test func hashesMatchPublishedValues() {
        #expect(FNV1a.hash32("") == 0x811C_9DC5)
        #expect(FNV1a.hash32("a") == 0xE40C_292C)
        #expect(FNV1a.hash64("") == 0xCBF2_9CE4_8422_2325)
        #expect(FNV1a.hash64("a") == 0xAF63_DC4C_8601_EC8C)
        let text = "d\u{E9}j\u{E0} vu, \u{1F600}"
        let bytewise = text.utf8.reduce(UInt64(0xCBF2_9CE4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x0000_0100_0000_01B3 }
        #expect(FNV1a.hash64(text) == bytewise)
    }
}
