import Foundation
import PortoutCore
import PortoutDelivery
import PortoutJournal
import PortoutTestSupport
import Synchronization
import Testing

@testable import PortoutRelay

/// Replay jobs across a restart: kept in `replays.json`, brought up to date with the journal, and carried on.
@Suite(.serialized)
struct ReplayRestartTests {
    /// Starts a relay that delivers to `sink`, and has it accept and deliver three statuses of one port out.
    static func startWithDelivered(_ sink: RecordingSink) throws -> RelayHarness {
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url))
        for status in ["initiated", "processing", "issued"] {
            #expect(try harness.post(Events.portOut("pout_j", status: status)).status == 202)
        }
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.delivered == 3 })
        return harness
    }

    static func jobFile(_ harness: RelayHarness) -> ReplayJobFile {
        ReplayJobFile(dataDirectory: harness.directory.path + "/data")
    }

    /// Saves `job` as the only job, as if the relay had stopped while the job was at that point.
    static func save(_ job: ReplayJob, in harness: RelayHarness) throws {
        try Self.jobFile(harness).save([job])
    }

    /// Stops the relay, saves `job` as the only job and starts the relay again.
    static func restart(_ harness: RelayHarness, savedJob job: ReplayJob) throws {
        harness.stop()
        try Self.save(job, in: harness)
        try harness.start()
    }

    /// Returns an accepted event as the journal's recovery describes it, for building pending deliveries.
    static func summary() -> EventSummary {
        EventSummary(
            sequence: 1, tenant: "t1", eventID: "evt_1", type: "com.gigs.portOut.initiated", portOutID: "pout_1",
            status: .initiated, acceptedAtMs: 1, location: JournalLocation(segment: 1, offset: 8, length: 10))
    }

    static func tenantFilter() -> DeliveryFilter {
        var filter = DeliveryFilter()
        filter.tenant = "t1"
        return filter
    }

    @Test func finishedJobSurvivesRestart() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try Self.startWithDelivered(sink)
        defer { harness.finish() }
        let started = try ReplayTests.json(try ReplayTests.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "t1"}"#))
        let id = try #require(started["id"]?.stringValue)
        let finished = try ReplayTests.waitForJob(harness, id, status: "completed")
        #expect(finished["delivered"] == 3)

        try harness.restart()
        let restored = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)"))
        #expect(restored == finished)
        let listed = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays"))["data"]?.arrayValue
        #expect(listed?.compactMap { $0.objectValue?["id"] } == [.string(id)])
        #expect(sink.received.count == 6)
    }

    @Test func scanCutShortRunsAgain() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try Self.startWithDelivered(sink)
        defer { harness.finish() }
        let job = ReplayJob(kind: "replay", filter: Self.tenantFilter())
        try Self.restart(harness, savedJob: job)
        let finished = try ReplayTests.waitForJob(harness, job.id, status: "completed")
        #expect(finished["queued"] == 3)
        #expect(finished["delivered"] == 3)
        #expect(waitUntil { sink.received.count == 6 })
        #expect(sink.received.suffix(3).map(\.status) == ["initiated", "processing", "issued"])
    }

    /// Work cut short by a stop leaves its job as it was, and the next start carries the job on.
    @Test func stopLeavesInterruptedJobForNextStart() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try Self.startWithDelivered(sink)
        defer { harness.finish() }
        harness.relay!.replays.stop()
        let id = try #require(
            try ReplayTests.json(try ReplayTests.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "t1"}"#))["id"]?.stringValue)
        Thread.sleep(forTimeInterval: 0.3)
        #expect(try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)"))["status"] == "scanning")
        #expect(sink.received.count == 3)

        try harness.restart()
        let finished = try ReplayTests.waitForJob(harness, id, status: "completed")
        #expect(finished["queued"] == 3)
        #expect(finished["delivered"] == 3)
        #expect(waitUntil { sink.received.count == 6 })
    }

    @Test func cancelledScanIsNotRunAgain() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try Self.startWithDelivered(sink)
        defer { harness.finish() }
        let job = ReplayJob(kind: "replay", filter: Self.tenantFilter())
        job.progress.withLock { $0.isCancelRequested = true }
        try Self.restart(harness, savedJob: job)
        #expect(try ReplayTests.waitForJob(harness, job.id, status: "cancelled")["queued"] == 0)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.count == 3)
    }

    @Test func redeliveryCutShortFails() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try Self.startWithDelivered(sink)
        defer { harness.finish() }
        let job = ReplayJob(kind: "redelivery", filter: Self.tenantFilter())
        try Self.restart(harness, savedJob: job)
        let failed = try ReplayTests.waitForJob(harness, job.id, status: "failed")
        #expect(failed["error"] == .string(ReplayRestart.redeliveryLost))
        #expect(sink.received.count == 3)
    }

    /// A stop between journaling a replay's deliveries and saving its new status leaves the job saved as
    /// scanning. The journal shows that it was queued, so its scan must not run again and send twice.
    @Test func queuedJobSavedAsScanningIsNotScannedAgain() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try Self.startWithDelivered(sink)
        defer { harness.finish() }
        #expect(try ReplayTests.admin(harness, "POST", "/admin/destinations/t1/d1/pause").status == 200)
        let started = try ReplayTests.json(try ReplayTests.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "t1"}"#))
        let id = try #require(started["id"]?.stringValue)
        _ = try ReplayTests.waitForJob(harness, id, status: "running")
        harness.stop()
        let saved = try #require(try Self.jobFile(harness).load().jobs.first)
        let rewound = ReplayJob(id: id, kind: saved.kind, filter: saved.filter, createdAtMs: saved.createdAtMs, progress: .init())
        try Self.save(rewound, in: harness)

        try harness.start()
        let restored = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)"))
        #expect(restored["status"] == "running")
        #expect(restored["queued"] == 3)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.pending == 3 })
        #expect(try ReplayTests.admin(harness, "POST", "/admin/destinations/t1/d1/resume").status == 200)
        #expect(try ReplayTests.waitForJob(harness, id, status: "completed")["delivered"] == 3)
        Thread.sleep(forTimeInterval: 0.3)
        #expect(sink.received.count == 6)
    }

    /// A replay that found its matches already pending journaled them all the same. After a restart they stay
    /// with the delivery or replay that queued them, so that replay stays complete and withdraws nothing of anyone
    /// else's.
    @Test func pendingMatchesStayWithTheirOwner() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try Self.startWithDelivered(sink)
        defer { harness.finish() }
        #expect(try ReplayTests.admin(harness, "POST", "/admin/destinations/t1/d1/pause").status == 200)
        #expect(try harness.post(Events.portOut("pout_k", status: "initiated")).status == 202)
        let first = try #require(
            try ReplayTests.json(try ReplayTests.admin(harness, "POST", "/admin/replays", body: #"{"portOut": "pout_j"}"#))["id"]?.stringValue)
        _ = try ReplayTests.waitForJob(harness, first, status: "running")
        let second = try #require(
            try ReplayTests.json(try ReplayTests.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "t1"}"#))["id"]?.stringValue)
        let secondJob = try ReplayTests.waitForJob(harness, second, status: "completed")
        #expect(secondJob["queued"] == 0)
        #expect(secondJob["alreadyPending"] == 4)

        try harness.restart()
        // Still complete after the restart, so there is nothing of it to cancel.
        let cancelled = try ReplayTests.admin(harness, "DELETE", "/admin/replays/\(second)")
        #expect(cancelled.status == 409)
        #expect(try ReplayTests.json(cancelled)["code"] == "replayFinished")
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.pending == 4 })
        #expect(try ReplayTests.admin(harness, "POST", "/admin/destinations/t1/d1/resume").status == 200)
        let firstJob = try ReplayTests.waitForJob(harness, first, status: "completed")
        #expect(firstJob["delivered"] == 3)
        #expect(waitUntil { sink.received.count == 7 })
        #expect(sink.received.filter { $0.portOut == "pout_k" }.count == 1)
        #expect(try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(second)"))["delivered"] == 0)
    }

    /// An attempt in flight when its replay is cancelled finishes. If it fails, it is withdrawn, not retried.
    @Test func cancelledReplayDoesNotRetryInFlightAttempt() throws {
        let failing = Atomic<Bool>(false)
        let sink = try RecordingSink { _, _ in
            failing.load(ordering: .relaxed) ? .init(status: 500, delaySeconds: 1) : .init(status: 204)
        }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_f", status: "initiated")).status == 202)
        #expect(waitUntil { sink.received.count == 1 })
        failing.store(true, ordering: .relaxed)
        let id = try #require(
            try ReplayTests.json(try ReplayTests.admin(harness, "POST", "/admin/replays", body: #"{"portOut": "pout_f"}"#))["id"]?.stringValue)
        #expect(waitUntil { sink.received.count == 2 })
        #expect(try ReplayTests.admin(harness, "DELETE", "/admin/replays/\(id)").status == 200)

        // The failed attempt comes back after 1 s, and a retry would follow 0.2 s later.
        #expect(waitUntil { (try? ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)")))?["withdrawn"] == 1 })
        Thread.sleep(forTimeInterval: 1)
        #expect(sink.received.count == 2)
        let job = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)"))
        #expect(job["status"] == "cancelled")
        #expect(job["queued"] == 1)
        #expect(harness.relay!.deliveryStatistics().first?.pending == 0)
    }

    /// Returns the names of the finished copies of the job file, leaving out temporary files.
    static func copiesAside(_ harness: RelayHarness) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: harness.directory.path + "/data").filter {
            $0.hasPrefix("replays.json.unreadable-") && !$0.hasSuffix(".tmp")
        }
    }

    @Test func unreadableFileIsMovedAside() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try Self.startWithDelivered(sink)
        defer { harness.finish() }
        harness.stop()
        let path = Self.jobFile(harness).path
        try Data("{\"replays\": [".utf8).write(to: URL(fileURLWithPath: path))

        try harness.start()
        #expect(try Self.copiesAside(harness).count == 1)
        #expect(!FileManager.default.fileExists(atPath: path))
        let list = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays"))
        #expect(list["data"]?.arrayValue?.isEmpty == true)
        let started = try ReplayTests.json(try ReplayTests.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "t1"}"#))
        let id = try #require(started["id"]?.stringValue)
        _ = try ReplayTests.waitForJob(harness, id, status: "completed")
        harness.stop()
        #expect(try Self.jobFile(harness).load().jobs.map(\.id) == [id])
    }

    /// A complete, finished job as `replays.json` saves it, for tests that put bad entries beside it.
    static let goodEntry = #"{"id": "rpl_good", "kind": "replay", "filter": {"tenant": "t1"}, "createdAtMs": 5, "status": "completed"}"#

    /// Jobs with ids that only a redelivery has, or with fewer or more ids than their count, listed 11 to 13.
    static var entriesWithBadIDs: [String] {
        func redelivery(_ id: String, _ ids: String) -> String {
            #"{"id": "\#(id)", "kind": "redelivery", "filter": {"deadLetteredOnly": true}, "createdAtMs": 5, "#
                + #""status": "completed", \#(ids)}"#
        }
        let replayWithIDs = #"{"id": "rpl_ids", "kind": "replay", "filter": {"tenant": "t1"}, "createdAtMs": 5, "#
            + #""status": "completed", "ids": ["dl_1_d1"], "idCount": 1}"#
        return [
            replayWithIDs, redelivery("rpl_few", #""ids": ["dl_1_d1", "dl_2_d1"], "idCount": 1"#),
            redelivery("rpl_more", #""ids": ["dl_1_d1"], "idCount": 3"#),
        ]
    }

    /// Entries that are not complete jobs, have an empty filter or repeat an id are left out. The others are
    /// restored, and the file is copied aside as it was.
    @Test func badEntriesAreLeftOut() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try Self.startWithDelivered(sink)
        defer { harness.finish() }
        harness.stop()
        let good = Self.goodEntry
        let entries = [
            #"{"id": 7}"#, good,
            #"{"id": "rpl_all", "kind": "replay", "filter": {}, "createdAtMs": 6, "status": "scanning"}"#,
            #"{"id": "rpl_bad", "kind": "replay", "filter": {"status": "lost"}, "createdAtMs": 7, "status": "scanning"}"#,
            good.replacingOccurrences(of: "completed", with: "failed"),
            good.replacingOccurrences(of: "rpl_good", with: "rpl_huge").replacingOccurrences(of: "\"completed\"}", with: "\"completed\", \"queued\": 9e18}"),
            good.replacingOccurrences(of: "rpl_good", with: "rpl_less").replacingOccurrences(of: "\"completed\"}", with: "\"completed\", \"stranded\": -1}"),
            good.replacingOccurrences(of: "rpl_good", with: "rpl_half").replacingOccurrences(of: "\"completed\"}", with: "\"completed\", \"delivered\": 1.5}"),
            good.replacingOccurrences(of: "rpl_good", with: "rpl_kind").replacingOccurrences(of: "\"replay\"", with: "\"bogus\""),
            good.replacingOccurrences(of: "rpl_good", with: ""),
            good.replacingOccurrences(of: "rpl_good", with: "rpl_wide")
                .replacingOccurrences(of: #"{"tenant": "t1"}"#, with: #"{"tenant": "t1", "colour": "blue"}"#),
            // Only a redelivery is given ids, and it keeps their count with them.
        ] + Self.entriesWithBadIDs

        let text = #"{"replays": ["# + entries.joined(separator: ", ") + "]}"
        try Data(text.utf8).write(to: URL(fileURLWithPath: Self.jobFile(harness).path))
        // A copy that was never finished is not taken for a copy of the same bytes.
        try Data(text.utf8).write(to: URL(fileURLWithPath: Self.jobFile(harness).path + ".unreadable-1.tmp"))

        let contents = try Self.jobFile(harness).load()
        #expect(contents.jobs.map(\.id) == ["rpl_good"])
        #expect(contents.rejectedEntries.count == 13)
        #expect(contents.rejectedEntries.first == "replays[0] is not a complete job")
        #expect(contents.rejectedEntries.contains("replays[2] has an empty filter"))
        #expect(contents.rejectedEntries.contains { $0.hasPrefix("replays[3] has an invalid filter: status") })
        #expect(contents.rejectedEntries.contains("replays[4] repeats the id rpl_good of an earlier entry"))
        #expect(contents.rejectedEntries.contains("replays[5] has queued 9000000000000000000, not an integer from 0 to 281474976710656"))
        #expect(contents.rejectedEntries.contains("replays[6] has stranded -1, not an integer from 0 to 281474976710656"))
        #expect(contents.rejectedEntries.contains("replays[7] has delivered 1.5, not an integer from 0 to 281474976710656"))
        #expect(contents.rejectedEntries.contains("replays[8] has kind bogus, not one of replay, redelivery, recovered"))
        #expect(contents.rejectedEntries.contains("replays[9] is not a complete job"))
        #expect(contents.rejectedEntries.contains("replays[10] has an invalid filter: colour is not a filter field"))
        for index in 11...13 {
            #expect(contents.rejectedEntries.contains { $0.hasPrefix("replays[\(index)] has invalid ids") }, "\(index)")
        }

        try harness.start()
        let copies = try Self.copiesAside(harness)
        #expect(copies.count == 1)
        let copied = try String(contentsOfFile: harness.directory.path + "/data/" + (copies.first ?? ""), encoding: .utf8)
        #expect(copied == text)
        let list = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays"))
        #expect(ReplayTests.listedIDs(list) == ["rpl_good"])
        // The scanning entries were left out, so nothing is replayed.
        Thread.sleep(forTimeInterval: 0.3)
        #expect(sink.received.count == 3)

        // The file now has only the good entry, so the next start neither reports nor copies anything.
        #expect(try Self.jobFile(harness).load().rejectedEntries.isEmpty)
        try harness.restart()
        #expect(try Self.copiesAside(harness).count == 1)
    }

    /// A file with a bad entry that cannot be rewritten stays as it is, and is copied aside once, not at every start.
    @Test func unwritableFileIsCopiedOnce() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try Self.startWithDelivered(sink)
        defer { harness.finish() }
        harness.stop()
        let good = Self.goodEntry
        let text = #"{"replays": [{"id": 7}, "# + good + "]}"
        let path = Self.jobFile(harness).path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        // A directory where the rewrite puts its temporary file makes every save of the file fail.
        try FileManager.default.createDirectory(atPath: path + ".tmp", withIntermediateDirectories: false)

        try harness.start()
        let list = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays"))
        #expect(ReplayTests.listedIDs(list) == ["rpl_good"])
        try harness.restart()
        let copies = try Self.copiesAside(harness)
        #expect(copies.count == 1)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == text)

        // Once the rewrite succeeds, the bad entry is still in the one copy.
        harness.stop()
        try FileManager.default.removeItem(atPath: path + ".tmp")
        try harness.start()
        #expect(try Self.copiesAside(harness) == copies)
        let copied = try String(contentsOfFile: harness.directory.path + "/data/" + (copies.first ?? ""), encoding: .utf8)
        #expect(copied == text)
        #expect(try Self.jobFile(harness).load().rejectedEntries.isEmpty)
    }

    /// A cancellation saved before its withdrawals reached the journal leaves the deliveries pending after a
    /// crash. They are withdrawn again at start instead of going out.
    @Test func cancelledJobWithPendingDeliveriesIsWithdrawnAgain() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try Self.startWithDelivered(sink)
        defer { harness.finish() }
        let id = try ReplayTests.startHeldReplay(harness, filter: #"{"tenant": "t1"}"#)
        harness.stop()
        let saved = try #require(try Self.jobFile(harness).load().jobs.first)
        saved.progress.withLock { $0.status = .cancelled }
        // The destination starts active, so a delivery the engine got before its withdrawal would go out.
        try FileManager.default.removeItem(atPath: harness.directory.path + "/data/destinations.json")

        try Self.restart(harness, savedJob: saved)
        let job = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)"))
        #expect(job["withdrawn"] == 3)
        #expect(job["status"] == "cancelled")
        #expect(harness.relay!.deliveryStatistics().first?.pending == 0)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(sink.received.count == 3)
    }

    /// Deliveries to a destination removed from the configuration count once under `notConfigured`, however
    /// many restarts they sit through.
    @Test func strandedDeliveriesCountOnceAcrossRestarts() throws {
        var progress = ReplayJob.Progress()
        progress.status = .running
        progress.queued = 4
        let job = ReplayJob(id: "rpl_d", kind: "replay", filter: Self.tenantFilter(), createdAtMs: 1, progress: progress)
        let event = Self.summary()
        let pending = [
            PendingDelivery(event: event, destination: "d1", replayID: "rpl_d"),
            PendingDelivery(event: event, destination: "d2", replayID: "rpl_d"),
            PendingDelivery(event: event, destination: "gone", replayID: "rpl_d"),
        ]
        let tallies = ["rpl_d": ReplayTally(delivered: 1, deadLettered: 0, withdrawn: 0)]
        for _ in 0..<3 {
            _ = ReplayRestart(saved: [job], tallies: tallies, pending: pending) { $0.destination != "gone" }
            let reported = job.jsonValue.objectValue
            #expect(reported?["queued"] == 3)
            #expect(reported?["notConfigured"] == 1)
        }
        // Configured again, the destination's delivery counts as queued once more.
        _ = ReplayRestart(saved: [job], tallies: tallies, pending: pending) { _ in true }
        #expect(job.jsonValue.objectValue?["queued"] == 4)
        #expect(job.jsonValue.objectValue?["notConfigured"] == 0)
    }

    /// A finished job's counts come from the journal at a restart, since its entry in the file is saved only at
    /// a change of status: settlements after the finish, and outcomes lost before the stop, show there.
    @Test func finishedJobCountsFromJournal() throws {
        var cancelled = ReplayJob.Progress()
        cancelled.status = .cancelled
        cancelled.isCancelRequested = true
        cancelled.queued = 12
        cancelled.withdrawn = 4
        let late = ReplayJob(id: "rpl_late", kind: "replay", filter: Self.tenantFilter(), createdAtMs: 1, progress: cancelled)
        var completed = ReplayJob.Progress()
        completed.status = .completed
        completed.queued = 3
        completed.delivered = 3
        let lost = ReplayJob(id: "rpl_lost", kind: "replay", filter: Self.tenantFilter(), createdAtMs: 2, progress: completed)
        let tallies = [
            "rpl_late": ReplayTally(delivered: 8, deadLettered: 0, withdrawn: 4),
            "rpl_lost": ReplayTally(delivered: 2, deadLettered: 0, withdrawn: 0),
        ]
        let pending = [PendingDelivery(event: Self.summary(), destination: "d1", replayID: "rpl_lost")]
        let restart = ReplayRestart(saved: [late, lost], tallies: tallies, pending: pending) { _ in true }

        let lateCounts = late.jsonValue.objectValue
        #expect(lateCounts?["delivered"] == 8)
        #expect(lateCounts?["withdrawn"] == 4)
        #expect(lateCounts?["queued"] == 12)
        // The delivery whose outcome was lost goes out again, and it is counted once when it settles.
        let lostCounts = lost.jsonValue.objectValue
        #expect(lostCounts?["delivered"] == 2)
        #expect(lostCounts?["queued"] == 3)
        #expect(lostCounts?["notConfigured"] == 0)
        var marked = pending
        restart.markStranded(&marked) { _ in true }
        #expect(marked.map(\.isStranded) == [false])
        restart.markStranded(&marked) { _ in false }
        #expect(marked.map(\.isStranded) == [true])
    }

    /// The counts a start takes from the journal are saved, since retention may later remove those records.
    @Test func startSavesJournalCounts() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try Self.startWithDelivered(sink)
        defer { harness.finish() }
        let id = try #require(
            try ReplayTests.json(try ReplayTests.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "t1"}"#))["id"]?.stringValue)
        _ = try ReplayTests.waitForJob(harness, id, status: "completed")
        harness.stop()
        let saved = try #require(try Self.jobFile(harness).load().jobs.first)
        saved.progress.withLock { $0.delivered = 0 }

        try Self.restart(harness, savedJob: saved)
        harness.relay!.replays.registry.flush()
        let reread = try #require(try Self.jobFile(harness).load().jobs.first)
        #expect(reread.jsonValue.objectValue?["delivered"] == 3)
    }

    /// A job that completed without its stranded delivery counts it as queued once it goes out after all.
    @Test func strandedDeliveryMovesToQueued() throws {
        var progress = ReplayJob.Progress()
        progress.status = .completed
        progress.queued = 1
        progress.delivered = 1
        progress.stranded = 1
        let job = ReplayJob(id: "rpl_s", kind: "replay", filter: Self.tenantFilter(), createdAtMs: 1, progress: progress)
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let file = ReplayJobFile(dataDirectory: directory.path)
        let registry = ReplayRegistry(logger: Logger(level: .error), file: file)
        registry.restore([job])
        #expect(job.jsonValue.objectValue?["notConfigured"] == 1)

        registry.settled(replayID: "rpl_s", outcome: .retryScheduled, wasStranded: true)
        #expect(job.jsonValue.objectValue?["queued"] == 1)
        registry.settled(replayID: "rpl_s", outcome: .delivered, wasStranded: true)
        let reported = job.jsonValue.objectValue
        #expect(reported?["queued"] == 2)
        #expect(reported?["delivered"] == 2)
        #expect(reported?["notConfigured"] == 0)
        #expect(reported?["status"] == "completed")
        // A finished job is read back from the file, so the move is saved.
        registry.flush()
        let saved = try #require(try file.load().jobs.first)
        #expect(saved.jsonValue.objectValue?["queued"] == 2)
        #expect(saved.jsonValue.objectValue?["notConfigured"] == 0)
    }

    /// Pending deliveries of a replay with no saved job get a job of their own, counted like a saved one.
    @Test func restartRecoversUnsavedReplay() throws {
        let event = Self.summary()
        let pending = [
            PendingDelivery(event: event, destination: "d1", replayID: "rpl_lost", sinceMs: 20),
            PendingDelivery(event: event, destination: "d2", replayID: "rpl_lost", sinceMs: 10),
            PendingDelivery(event: event, destination: "gone", replayID: "rpl_lost", sinceMs: 30),
            PendingDelivery(event: event, destination: "d1", replayID: "rpl_saved"),
            PendingDelivery(event: event, destination: "d3"),
        ]
        var progress = ReplayJob.Progress()
        progress.status = .running
        progress.queued = 1
        let saved = ReplayJob(id: "rpl_saved", kind: "replay", filter: Self.tenantFilter(), createdAtMs: 1, progress: progress)
        let restart = ReplayRestart(
            saved: [saved], tallies: ["rpl_lost": ReplayTally(delivered: 1, deadLettered: 0, withdrawn: 0)],
            pending: pending
        ) { $0.destination != "gone" }

        #expect(restart.recovered.map(\.id) == ["rpl_lost"])
        #expect(restart.jobs.map(\.id) == ["rpl_saved", "rpl_lost"])
        let recovered = try #require(restart.recovered.first)
        #expect(recovered.kind == "recovered")
        #expect(recovered.createdAtMs == 10)
        #expect(recovered.filter.isEmpty)
        let reported = recovered.jsonValue.objectValue
        #expect(reported?["status"] == "running")
        #expect(reported?["queued"] == 3)
        #expect(reported?["delivered"] == 1)
        #expect(reported?["notConfigured"] == 1)
        #expect(restart.finished.isEmpty)
    }

    /// A replay whose job file was lost can still be seen and cancelled after a restart.
    @Test func recoveredReplayCanBeCancelled() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try Self.startWithDelivered(sink)
        defer { harness.finish() }
        let pause = try ReplayTests.admin(harness, "POST", "/admin/destinations/t1/d1/pause")
        #expect(pause.status == 200)
        let started = try ReplayTests.json(try ReplayTests.admin(harness, "POST", "/admin/replays", body: #"{"tenant": "t1"}"#))
        let id = try #require(started["id"]?.stringValue)
        #expect(try ReplayTests.waitForJob(harness, id, status: "running")["queued"] == 3)
        harness.stop()
        try FileManager.default.removeItem(atPath: Self.jobFile(harness).path)

        try harness.start()
        let recovered = try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)"))
        #expect(recovered["kind"] == "recovered")
        #expect(recovered["status"] == "running")
        #expect(recovered["queued"] == 3)
        #expect(recovered["filter"] == .object(JSONObject()))
        try ReplayTests.cancelPausedReplay(harness, id, withdrawn: 3, sink: sink, received: 3)
        // Saved now, the job is restored as it is at the next start.
        try harness.restart()
        #expect(try ReplayTests.json(try ReplayTests.admin(harness, "GET", "/admin/replays/\(id)"))["kind"] == "recovered")
    }

    @Test func oldestFinishedJobsAreDropped() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let file = ReplayJobFile(dataDirectory: directory.path)
        let registry = ReplayRegistry(logger: Logger(level: .error), file: file)
        var finished = ReplayJob.Progress()
        finished.status = .completed
        let count = ReplayRegistry.maxFinishedJobs + 2
        registry.restore((0..<count).map { index in
            ReplayJob(id: "rpl_\(index)", kind: "replay", filter: Self.tenantFilter(), createdAtMs: Int64(index), progress: finished)
        })
        let running = ReplayJob(kind: "replay", filter: Self.tenantFilter())
        registry.restore([ReplayJob(id: running.id, kind: "replay", filter: running.filter, createdAtMs: 0, progress: .init())])

        registry.save()
        registry.flush()
        let saved = try file.load().jobs
        #expect(saved.count == ReplayRegistry.maxFinishedJobs + 1)
        #expect(!saved.contains { $0.id == "rpl_0" || $0.id == "rpl_1" })
        #expect(saved.contains { $0.id == running.id })
        #expect(registry.all().count == saved.count)
    }

    /// A saved filter is read back with the same bounds, to the millisecond, now and after 2038, when Unix
    /// seconds no longer fit in 31 bits and a double has fewer fraction bits.
    @Test(arguments: [Int64(1_796_451_515_000), 2_152_231_581_000])
    func filterTimesSurviveTheFile(start: Int64) throws {
        var mismatches: [Int64] = []
        for milliseconds in stride(from: start, to: start + 10_000, by: 7) {
            var filter = DeliveryFilter()
            filter.acceptedFromMs = milliseconds
            filter.acceptedToMs = milliseconds + 1
            let object = try #require(filter.jsonValue.objectValue)
            guard case .success(let parsed) = DeliveryFilter.parse({ object[$0] }), parsed == filter else {
                mismatches.append(milliseconds)
                continue
            }
        }
        #expect(mismatches.count == 0, "bounds changed, the first \(mismatches.prefix(3))")
    }

    /// Events are accepted at whole milliseconds, so a bound between two takes the later one.
    @Test func subMillisecondBoundTakesNextMillisecond() {
        #expect(DeliveryFilter.milliseconds(bound: 1_796_451_515.1237) == 1_796_451_515_124)
        #expect(DeliveryFilter.milliseconds(bound: 1_796_451_515.123) == 1_796_451_515_123)
        #expect(DeliveryFilter.milliseconds(bound: 1_796_451_515) == 1_796_451_515_000)
    }

    @Test func restartCountsSettledDeliveriesFromJournal() throws {
        var progress = ReplayJob.Progress()
        progress.status = .running
        progress.queued = 4
        let job = ReplayJob(id: "rpl_a", kind: "replay", filter: Self.tenantFilter(), createdAtMs: 1, progress: progress)
        let event = Self.summary()
        let pending = [
            PendingDelivery(event: event, destination: "d1", replayID: "rpl_a"),
            PendingDelivery(event: event, destination: "gone", replayID: "rpl_a"),
            PendingDelivery(event: event, destination: "d1", replayID: "rpl_other"),
        ]
        let restart = ReplayRestart(
            saved: [job], tallies: ["rpl_a": ReplayTally(delivered: 1, deadLettered: 1, withdrawn: 0)], pending: pending
        ) { $0.destination != "gone" }

        let restored = job.progress.withLock { $0 }
        #expect(restored.status == .running)
        #expect(restored.queued == 3)
        #expect(restored.stranded == 1)
        #expect(job.jsonValue.objectValue?["notConfigured"] == 1)
        #expect(restored.delivered == 1)
        #expect(restored.deadLettered == 1)
        #expect(restart.finished.isEmpty)
        #expect(restart.rescans.isEmpty)
        #expect(restart.cancels.isEmpty)
    }

    /// Retention may remove a running job's early attempt records. With nothing of it pending, it still finishes.
    @Test func restartFinishesJobWithNothingPending() throws {
        var progress = ReplayJob.Progress()
        progress.status = .running
        progress.queued = 5
        let job = ReplayJob(id: "rpl_c", kind: "replay", filter: Self.tenantFilter(), createdAtMs: 1, progress: progress)
        let restart = ReplayRestart(
            saved: [job], tallies: ["rpl_c": ReplayTally(delivered: 2, deadLettered: 0, withdrawn: 0)], pending: []
        ) { _ in true }

        #expect(restart.finished.map(\.job.id) == ["rpl_c"])
        #expect(restart.finished.first?.status == .completed)
        #expect(job.progress.withLock { $0.delivered } == 2)
    }

    @Test func restartFinishesSettledJob() throws {
        var progress = ReplayJob.Progress()
        progress.status = .running
        progress.queued = 2
        progress.isCancelRequested = true
        let job = ReplayJob(id: "rpl_b", kind: "replay", filter: Self.tenantFilter(), createdAtMs: 1, progress: progress)
        let restart = ReplayRestart(
            saved: [job], tallies: ["rpl_b": ReplayTally(delivered: 1, deadLettered: 0, withdrawn: 1)], pending: []
        ) { _ in true }

        #expect(restart.finished.map(\.job.id) == ["rpl_b"])
        #expect(restart.finished.first?.status == .cancelled)
        #expect(job.progress.withLock { $0.withdrawn } == 1)
    }

    /// A reload can remove a destination between a replay's scan and the engine taking its deliveries. They are
    /// journaled, so they are held, stranded, and a reload that adds the destination back sends them.
    @Test func destinationRemovedBeforeSubmitIsHeld() throws {
        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_r", status: "initiated")).status == 202)
        #expect(waitUntil { sink.received.count == 1 })
        let relay = harness.relay!
        let matches = try ReplayScan.run(dataDirectory: harness.directory.path + "/data", filter: Self.tenantFilter()).get()
            .matches
        try #require(matches.count == 1)
        _ = relay.reload(try harness.config(tenantsJSON: RelayHarness.tenantsJSON()))

        let records = matches.map {
            ReplayRecord(replayID: "rpl_r", destination: $0.destination, event: $0.event, atMs: WallClock.milliseconds())
        }
        let deliveries = records.map {
            PendingDelivery(event: $0.event, destination: $0.destination, replayID: $0.replayID, sinceMs: $0.atMs)
        }
        let submitted = Locked<ReplaySubmission?>(nil)
        relay.engine.openReplayWindow { _ in }
        relay.engine.submitReplay(deliveries, records: records) { submission in submitted.withLock { $0 = submission } }
        #expect(waitUntil { submitted.withLock { $0 } != nil })
        #expect(submitted.withLock { $0 }?.stranded == 1)
        #expect(submitted.withLock { $0 }?.queued == 0)

        _ = relay.reload(try harness.config(tenantsJSON: RelayHarness.tenantsJSON(destinations: DeliveryTests.destination(sink.url))))
        #expect(waitUntil { sink.received.count == 2 })
    }

    /// A replay journals its record while the delivery's first attempt is in flight, and the engine takes the
    /// replay's copy after that attempt has settled. The copy is then resumed after a restart, although the
    /// first attempt's outcome follows the replay's record in the journal. The replay's record is journaled
    /// again behind that outcome and synced at once.
    @Test func copyQueuedAfterOwnerSettledSurvivesRestart() throws {
        // The first attempt takes a second, and the copy's first attempt is still in flight at the stop.
        let delays: [Double] = [1, 30]
        let sink = try RecordingSink { index, _ in
            RecordingSink.Reply(status: 204, delaySeconds: index < delays.count ? delays[index] : 0)
        }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_w", status: "initiated")).status == 202)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.inFlight == 1 })

        let relay = harness.relay!
        let matches = try ReplayScan.run(dataDirectory: harness.directory.path + "/data", filter: Self.tenantFilter()).get()
            .matches
        try #require(matches.count == 1)
        let now = WallClock.milliseconds()
        let records = matches.map { ReplayRecord(replayID: "rpl_w", destination: $0.destination, event: $0.event, atMs: now) }
        let journaled = DispatchSemaphore(value: 0)
        relay.engine.openReplayWindow { running in
            #expect(running)
            relay.journal.appendAll(records.map(JournalRecord.replay)) { _ in journaled.signal() }
        }
        journaled.wait()
        #expect(waitUntil { relay.deliveryStatistics().first?.delivered == 1 })

        let deliveries = records.map {
            PendingDelivery(event: $0.event, destination: $0.destination, replayID: $0.replayID, sinceMs: $0.atMs)
        }
        let syncsBefore = relay.journal.metrics.syncDuration.snapshot().count
        let submitted = Locked<ReplaySubmission?>(nil)
        relay.engine.submitReplay(deliveries, records: records) { submission in submitted.withLock { $0 = submission } }
        #expect(waitUntil { submitted.withLock { $0 }?.queued == 1 })
        #expect(waitUntil { sink.received.count == 2 })
        // Nothing else writes to the journal now, so only the record journaled again can have been synced.
        #expect(waitUntil { relay.journal.metrics.syncDuration.snapshot().count > syncsBefore })

        try harness.restart()
        #expect(waitUntil { sink.received.count == 3 })
        #expect(Set(sink.received.compactMap { $0.headers["webhook-id"] }) == ["evt_pout_w_initiated"])
    }

    /// As above, but the first attempt gives up. The dead letter reaches the list after the replay's record, and
    /// leaves it again when the replay's copy is journaled behind it: delivered, the copy leaves nothing listed,
    /// before a restart and after one.
    @Test func copyQueuedAfterOwnerDeadLetteredLeavesNothingListed() throws {
        let sink = try RecordingSink { index, _ in
            RecordingSink.Reply(status: index == 0 ? 500 : 204, delaySeconds: index == 0 ? 1 : 0)
        }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: DeliveryTests.destination(sink.url, maxAttempts: 1))
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_d", status: "initiated")).status == 202)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.inFlight == 1 })

        let relay = harness.relay!
        let scan = ReplayScan.run(dataDirectory: harness.directory.path + "/data", filter: Self.tenantFilter())
        let matches = try scan.get().matches
        try #require(matches.count == 1)
        let now = WallClock.milliseconds()
        let records = matches.map {
            ReplayRecord(replayID: "rpl_d", destination: $0.destination, event: $0.event, atMs: now)
        }
        let journaled = DispatchSemaphore(value: 0)
        relay.engine.openReplayWindow { running in
            #expect(running)
            relay.journal.appendAll(records.map(JournalRecord.replay)) { _ in journaled.signal() }
        }
        journaled.wait()
        let keys = records.map { DeliveryKey(sequence: $0.event.sequence, destination: $0.destination) }
        // What ReplayJobs does once the records are journaled: nothing is listed yet to take off the list.
        keys.forEach(relay.deadLetters.suspend)
        #expect(waitUntil { relay.deadLetters.count == 1 })

        let deliveries = records.map {
            PendingDelivery(event: $0.event, destination: $0.destination, replayID: $0.replayID, sinceMs: $0.atMs)
        }
        let submitted = Locked<ReplaySubmission?>(nil)
        relay.engine.submitReplay(deliveries, records: records) { submission in submitted.withLock { $0 = submission } }
        #expect(waitUntil { submitted.withLock { $0 }?.queued == 1 })
        #expect(waitUntil { relay.deliveryStatistics().first?.delivered == 1 })
        #expect(waitUntil { relay.deadLetters.count == 0 })
        Thread.sleep(forTimeInterval: 0.2)
        #expect(relay.deadLetters.count == 0)

        try harness.restart()
        #expect(harness.relay!.deadLetters.count == 0)
        #expect(sink.received.count == 2)
    }
}
