/// Finds event records whose sequence does not rise. The relay assigns sequences and appends events under one
/// lock, so they rise through the journal. A lower or repeated one means records copied or restored into the
/// journal, such as a segment copied under a later name, whose events a start would deliver a second time.
public struct EventSequenceCheck: Sendable {
    private var highest: UInt64 = 0
    private var outOfSequence = 0
    private var first: (sequence: UInt64, after: UInt64)?

    public init() {}

    /// Notes the event with `sequence`, read after every earlier record.
    public mutating func note(_ sequence: UInt64) {
        guard sequence <= self.highest else {
            self.highest = sequence
            return
        }
        self.outOfSequence += 1
        if self.first == nil {
            self.first = (sequence, self.highest)
        }
    }

    /// Returns what was found since the last call, such as "2 events out of sequence, the first with sequence 3
    /// after 7, …", or nil, and counts afresh from here. The highest sequence seen carries on.
    public mutating func takeProblem() -> String? {
        defer {
            self.outOfSequence = 0
            self.first = nil
        }
        guard let first = self.first else { return nil }
        let events = self.outOfSequence == 1 ? "1 event" : "\(self.outOfSequence) events"
        return "\(events) out of sequence, the first with sequence \(first.sequence) after \(first.after), "
            + "as when records are copied or restored into the journal"
    }
}
