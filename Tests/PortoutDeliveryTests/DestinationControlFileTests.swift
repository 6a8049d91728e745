import Foundation
import PortoutCore
import PortoutJournal
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
        #"{"destinations": [], "unknownModes": {"reason": "r"}}"#, #"{"destinations": [], "unknownModes": true}"#,
        #"{"version": 3, "destinations": []}"#, #"{"version": "2", "destinations": []}"#,
        #"{"version": 2, "destinations": [{"tenant": "t1", "destination": "d1", "mode": "active"}]}"#,
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
        #expect(try file.load() == DestinationControlFile.Contents())
        try #"{"destinations": []}"#.write(toFile: file.path, atomically: true, encoding: .utf8)
        #expect(try file.load().entries.isEmpty)
        // A file without the version was saved by one that wrote held destinations only.
        #expect(try file.load().namesEveryDestination == false)
        try #"{"destinations": [{"tenant": "t1", "destination": "d1", "mode": "paused", "reason": "r", "changedAtMs": 7}]}"#
            .write(toFile: file.path, atomically: true, encoding: .utf8)
        #expect(try file.load().entries == ["t1/d1": .init(mode: .paused, reason: "r", changedAtMs: 7)])
        #expect(try file.load().unknownModes == nil)

        let unknown = DestinationControlFile.UnknownModes(reason: "unreadable at start", sinceMs: 9)
        let heldEntries: [String: DestinationControlFile.Entry] = [
            "t1/d2": .init(mode: .disabled, reason: "410", changedAtMs: 8)
        ]
        try file.save([], unconfigured: heldEntries, unknownModes: unknown)
        #expect(try file.load().entries == ["t1/d2": .init(mode: .disabled, reason: "410", changedAtMs: 8)])
        #expect(try file.load().unknownModes == unknown)
        #expect(try file.load().namesEveryDestination)
    }

    /// A symbolic link whose target is gone could be hiding held destinations as much as a damaged file.
    @Test func danglingLinkIsUnreadable() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let file = DestinationControlFile(path: directory.file("destinations.json"))
        try FileManager.default.createSymbolicLink(atPath: file.path, withDestinationPath: directory.file("gone.json"))
        #expect(throws: (any Error).self) { try file.load() }
    }

    /// Every 410 marks its destination, also one of a withdrawn replay, and the latest counts. No other status
    /// clears the mark, because an attempt in flight at the 410 can end after it.
    @Test func goneDestinationsKeepLatest410() {
        func attempt(_ status: Int?, _ outcome: AttemptOutcome, at atMs: Int64) -> AttemptRecord {
            AttemptRecord(
                eventSequence: 1, tenant: "t1", destination: "d1", attempt: 1, outcome: outcome, httpStatus: status,
                atMs: atMs, nextAttemptAtMs: nil, error: "")
        }
        var goneDestinations = GoneDestinations()
        goneDestinations.note(attempt(204, .delivered, at: 3))
        #expect(goneDestinations.sinceMs.isEmpty)
        goneDestinations.note(attempt(410, .retryScheduled, at: 5))
        goneDestinations.note(attempt(204, .delivered, at: 7))
        #expect(goneDestinations.sinceMs == ["t1/d1": 5])
        goneDestinations.note(attempt(410, .cancelled, at: 9))
        goneDestinations.note(attempt(nil, .retryScheduled, at: 11))
        #expect(goneDestinations.sinceMs == ["t1/d1": 9])
    }
}
