import PortoutCore
import Synchronization

/// Journal metrics counted by the writer thread.
public final class JournalMetrics: Sendable {
    public let recordsWritten = Counter()
    public let bytesWritten = Counter()
    /// Seconds each `fdatasync` took.
    public let syncDuration = Histogram(bounds: Histogram.secondsBounds)
    /// Records written together in one batch, which share one `fdatasync` when any needs it.
    public let groupCommitRecords = Histogram(bounds: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024])
    /// Batches whose write or sync failed.
    public let writeFailures = Counter()
    /// Batches of events and delivery outcomes alike, for the readiness check.
    public let writes = WriteHealth()

    public init() {}
}
