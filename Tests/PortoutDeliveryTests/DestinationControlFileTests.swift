import Foundation
import PortoutCore
import PortoutTestSupport
import Testing

@testable import PortoutDelivery

struct DestinationControlFileTests {
    /// Any file the relay did not write in this shape could be hiding held destinations, so reading it fails,
    /// and the start then pauses every destination instead of starting them active.
    @Test(arguments: [
        "[]", "null", #"{"destinations": null}"#, #"{"destinatons": []}"#, #"{"destinations": {"x": 1}}"#,
        #"{"destinations": [{"tenant": "t1", "destination": "d1"}]}"#,
        #"{"destinations": [{"tenant": "t1", "destination": "d1", "mode": "paused", "changedAtMs": 1e300}]}"#,
        #"{"destinations": [{"tenant": "t1", "destination": "d1", "mode": "paused", "changedAtMs": 1.5}]}"#,
    ])
    func unexpectedShapeIsUnreadable(_ text: String) throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let file = DestinationControlFile(path: directory.file("destinations.json"))
        try text.write(toFile: file.path, atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) { try file.load() }
    }

    @Test func writtenShapeIsRead() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let file = DestinationControlFile(path: directory.file("destinations.json"))
        #expect(try file.load().isEmpty)
        try #"{"destinations": []}"#.write(toFile: file.path, atomically: true, encoding: .utf8)
        #expect(try file.load().isEmpty)
        try #"{"destinations": [{"tenant": "t1", "destination": "d1", "mode": "paused", "reason": "r", "changedAtMs": 7}]}"#
            .write(toFile: file.path, atomically: true, encoding: .utf8)
        #expect(try file.load() == ["t1/d1": .init(mode: .paused, reason: "r", changedAtMs: 7)])
    }
}
