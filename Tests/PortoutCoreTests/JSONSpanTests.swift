import Testing

@testable import PortoutCore

struct JSONSpanTests {
    static func value(_ key: String, in text: String) -> String? {
        let bytes = Array(text.utf8)
        return JSONSpan.member(key, in: bytes).map { String(decoding: bytes[$0], as: UTF8.self) }
    }

    @Test func findsTopLevelMember() {
        let text = #" { "a" : "x}\"]" , "nested" : {"data": 1, "b": [1, {"c": "}"}]}, "data" : {"k": "v\"}\\"} , "z": null}"#
        #expect(Self.value("data", in: text) == #"{"k": "v\"}\\"}"#)
        #expect(Self.value("a", in: text) == #""x}\"]""#)
        #expect(Self.value("z", in: text) == "null")
    }

    @Test func scalarsAndMissingKeys() {
        #expect(Self.value("n", in: #"{"n":-1.5e3,"t":true}"#) == "-1.5e3")
        #expect(Self.value("t", in: #"{"n":-1.5e3,"t":true}"#) == "true")
        #expect(Self.value("missing", in: #"{"n":1}"#) == nil)
        #expect(Self.value("n", in: "[1]") == nil)
        // An escaped spelling of the key is not recognised, which callers handle with a full parse.
        #expect(Self.value("data", in: #"{"d\u0061ta":1}"#) == nil)
    }
}
