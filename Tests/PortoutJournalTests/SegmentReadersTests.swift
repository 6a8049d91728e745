import Foundation
import PortoutCore
import PortoutTestSupport
import Testing

@testable import PortoutJournal

#if canImport(Glibc)
import Glibc
#endif

@Suite struct SegmentReadersTests {
    /// Writes `count` files holding their own number and returns their paths.
    static func files(in directory: TemporaryDirectory, count: Int) -> [String] {
        (1...count).map { number in
            let path = directory.path + "/\(number)"
            FileManager.default.createFile(atPath: path, contents: Data("\(number)".utf8))
            return path
        }
    }

    static func firstByte(_ fd: Int32) -> UInt8? {
        var byte: UInt8 = 0
        return pread(fd, &byte, 1, 0) == 1 ? byte : nil
    }

    /// Descriptors of files under `directory` that this process has open.
    static func openDescriptors(under directory: String) -> Int {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return entries.count { entry in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + entry))?
                .hasPrefix(directory + "/") ?? false
        }
    }

    @Test func idleDescriptorsStayUnderCap() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let paths = Self.files(in: directory, count: 5)
        let readers = SegmentReaders(maxOpen: 2)
        for (index, path) in paths.enumerated() {
            let byte = try readers.withDescriptor(segment: UInt64(index + 1), path: { path }) { Self.firstByte($0) }
            #expect(byte == UInt8(ascii: "1") + UInt8(index))
        }
        #expect(readers.openCount == 2)
        #expect(Self.openDescriptors(under: directory.path) == 2)
        readers.closeAll()
        #expect(Self.openDescriptors(under: directory.path) == 0)
    }

    /// A descriptor in use by a read is neither evicted by the cap nor closed by retention until the read ends.
    @Test func heldDescriptorOutlivesCapAndRetirement() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let paths = Self.files(in: directory, count: 3)
        let readers = SegmentReaders(maxOpen: 2)
        try readers.withDescriptor(segment: 1, path: { paths[0] }) { held throws(JournalError) in
            for segment in 2...3 {
                _ = try readers.withDescriptor(segment: UInt64(segment), path: { paths[segment - 1] }) {
                    Self.firstByte($0)
                }
            }
            #expect(readers.openCount == 2)
            readers.retire([1])
            #expect(Self.firstByte(held) == UInt8(ascii: "1"))
        }
        #expect(readers.openCount == 1)
        #expect(Self.openDescriptors(under: directory.path) == 1)
        readers.closeAll()
    }

    /// Reading back one record from each of many segments keeps at most `maxOpen` of them open.
    @Test func journalReadsKeepFewSegmentsOpen() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (journal, _) = try JournalTests.open(directory.path, segmentBytes: 1 << 16)
        defer { journal.close() }
        // Appended one at a time, and each larger than a segment, so that the next one starts a new segment.
        let body = String(repeating: "b", count: 70_000)
        let count = SegmentReaders.maxOpen + 36
        let locations = try (1...count).map { sequence in
            try JournalTests.appendAll(journal, [JournalTests.event(UInt64(sequence), body: body)])[0].get()
        }
        #expect(Set(locations.map(\.segment)).count == count)
        for location in locations {
            #expect(try journal.readEventBody(at: location).body.count == body.utf8.count)
        }
        // Besides the readers: the segment written to, the one prepared next and the lock file.
        #expect(Self.openDescriptors(under: directory.path) <= SegmentReaders.maxOpen + 3)
    }
}
