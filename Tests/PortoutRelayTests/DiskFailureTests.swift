import Foundation
import PortoutCore
import PortoutJournal
import PortoutTestSupport
import Synchronization
import Testing

@testable import PortoutRelay

@Suite(.serialized)
struct DiskFailureTests {

    static func eventCount(_ dataDirectory: String) throws -> Int {
        var count = 0
        try JournalCommands.dump(dataDirectory: dataDirectory, bodies: false, deadLettersOnly: false) { line in
            if line.contains(#""record":"event""#) { count += 1 }
        }
        return count
    }

    /// Mounts a 256 KiB tmpfs at `data` in `directory` and returns its path.
    static func mountTmpfs(in directory: TemporaryDirectory) throws -> String {
        let mount = directory.path + "/data"
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        #expect(runProgram("/bin/mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mount]) == 0)
        return mount
    }

    /// Fills what is left of the file system at `mount` with a file and returns its path. tmpfs allocates whole
    /// pages, so the next write that needs a page fails.
    static func fill(_ mount: String) -> String {
        let filler = mount + "/filler"
        #expect(FileManager.default.createFile(atPath: filler, contents: nil))
        let handle = FileHandle(forWritingAtPath: filler)!
        while (try? handle.write(contentsOf: Data(count: 4096))) != nil {}
        try? handle.close()
        return filler
    }

    /// The data directory on a 256 KiB tmpfs filled to the brim: 503 with Retry-After and no 2xx until space
    /// returns, then 202 again without a restart.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func fullDiskGives503ThenRecovers() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let mount = try Self.mountTmpfs(in: directory)
        defer { _ = runProgram("/bin/umount", ["-l", mount]) }
        let harness = try RelayHarness(destinations: "[]", directory: directory)
        defer { harness.stop() }
        #expect(try harness.post(Events.portOut("pout_disk", status: "initiated")).status == 202)
        let filler = Self.fill(mount)

        // Space left in the segment's last page still takes a few events; the first that needs a new page fails.
        var accepted = 1
        var rejected: LoopbackClient.Response?
        for index in 0..<20 {
            let response = try harness.post(Events.portOut("pout_full_\(index)", status: "initiated"))
            if response.status == 202 {
                accepted += 1
            } else {
                rejected = response
                break
            }
        }
        let failure = try #require(rejected)
        #expect(failure.status == 503)
        #expect(failure.header("Retry-After") == "5")
        #expect(failure.json?.objectValue?["code"] == "journalUnavailable")
        let client = try harness.client()
        #expect(client.request("GET", "/readyz")?.status == 503)
        // A small outcome batch still fits the segment's last page, and its success does not make the relay ready.
        let written = DispatchSemaphore(value: 0)
        harness.relay!.journal.appendAdvisory([Self.smallOutcome]) { _ in written.signal() }
        written.wait()
        #expect(client.request("GET", "/readyz")?.status == 503)
        // The rejected event was not remembered, so the same request gets 503 again rather than 200 as a duplicate.
        let retryBody = Events.portOut("pout_full_\(accepted - 1)", status: "initiated")
        #expect(try harness.post(retryBody).status == 503)

        try FileManager.default.removeItem(atPath: filler)
        // The failed writes fixed no project, so the port out may still come under the tenant's other one.
        let otherProject = Events.portOut("pout_full_\(accepted - 1)", status: "initiated", project: "brit-tel")
        #expect(try harness.post(otherProject).status == 202)
        accepted += 1
        #expect(try harness.post(retryBody).status == 200)
        #expect(client.request("GET", "/readyz")?.status == 200)
        harness.stop()
        // Every 202 is in the journal, and nothing else is.
        #expect(try Self.eventCount(mount) == accepted)
    }

    static let smallOutcome = JournalRecord.attempt(AttemptRecord(
        eventSequence: 1, tenant: "t1", destination: "d1", attempt: 1, outcome: .delivered, httpStatus: 204, atMs: 1,
        nextAttemptAtMs: nil, error: ""))

    /// A failed write of delivery outcomes alone, which no webhook waits for, still shows in readiness and the
    /// failure count, since the deliveries it leaves unrecorded go out again after a restart.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func failedOutcomeWriteShowsInReadiness() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let mount = try Self.mountTmpfs(in: directory)
        defer { _ = runProgram("/bin/umount", ["-l", mount]) }
        let journal = try Journal.open(directory: mount + "/journal", segmentBytes: 1 << 20, logger: Logger(level: .error)) { _, _ in }
        defer { journal.close() }
        let filler = Self.fill(mount)

        // More than the segment's one page can take, so the batch needs a page the full tmpfs does not have.
        let written = DispatchSemaphore(value: 0)
        journal.appendAdvisory(Array(repeating: Self.smallOutcome, count: 200)) { _ in written.signal() }
        written.wait()
        #expect(journal.metrics.writes.isFailing(nowMs: WriteHealth.nowMs(), windowMs: 60_000))
        #expect(journal.metrics.writeFailures.value == 1)

        try FileManager.default.removeItem(atPath: filler)
        journal.appendAdvisory([Self.smallOutcome]) { _ in written.signal() }
        written.wait()
        #expect(!journal.metrics.writes.isFailing(nowMs: WriteHealth.nowMs(), windowMs: 60_000))
    }

    /// An abandonment whose records cannot be written puts the deliveries back, where retention and a restart
    /// still find them, and abandons them once the disk has space again.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func failedAbandonmentPutsDeliveriesBack() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let mount = try Self.mountTmpfs(in: directory)
        defer { _ = runProgram("/bin/umount", ["-l", mount]) }
        let sink = try RecordingSink { _, _ in .init(status: 503) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: AbandonTests.destinations(["d1"], url: sink.url), directory: directory)
        defer { harness.stop() }
        #expect(try AdminTests.admin(harness, "POST", "/admin/destinations/t1/d1/pause", token: nil).status == 200)
        // More records than the segment's last page takes, so that the abandonment needs a page the full disk lacks.
        let count = 60
        for index in 0..<count {
            #expect(try harness.post(Events.portOut("pout_back\(index)", status: "initiated")).status == 202)
        }
        let filler = Self.fill(mount)

        let failed = try AbandonTests.abandon(harness, "d1")
        #expect(failed.status == 500)
        #expect(failed.json?.objectValue?["code"] == "abandonmentNotJournaled")
        let statistics = try #require(harness.relay!.deliveryStatistics().first)
        #expect(statistics.pending == count)
        #expect(statistics.abandoned == 0)
        #expect(AbandonTests.oldestPendingSegment(harness) != nil)
        #expect(try AbandonTests.deadLetters(harness).isEmpty)

        try FileManager.default.removeItem(atPath: filler)
        try harness.restart()
        // Restored deliveries reach the queue on the delivery thread's first turn.
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.pending == count })
        #expect(try AbandonTests.deadLetters(harness).isEmpty)
        let abandoned = try AbandonTests.abandon(harness, "d1")
        #expect(abandoned.status == 200)
        #expect(abandoned.json?.objectValue?["abandoned"] == .number(Double(count)))
        #expect(try AbandonTests.deadLetters(harness).count == count)
        #expect(AbandonTests.oldestPendingSegment(harness) == nil)
    }

    /// A file size limit makes journal writes fail with EFBIG. The relay responds 503 as for a full disk, and a
    /// start under the same limit works, instead of SIGXFSZ ending the process.
    @Test func fileSizeLimitGives503() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let configPath = directory.file("config.json")
        try ReloadAndShutdownTests.writeConfig(
            configPath, directory: directory, tenants: "[\(ReloadAndShutdownTests.tenant("t1"))]")
        for round in 0..<2 {
            let relay = try RelayProcess(
                configPath: configPath, logPath: directory.file("relay-\(round).log"), fileSizeLimitKiB: 256)
            defer { relay.kill() }
            var statuses: [Int?] = []
            for index in 0..<1000 {
                let status = ReloadAndShutdownTests.post(
                    port: relay.port, tenant: "t1", body: Events.portOut("pout_limit_\(round)_\(index)", status: "initiated"))
                statuses.append(status)
                if status != 202 { break }
            }
            #expect(statuses.last == 503, "round \(round): \(statuses.suffix(3))")
            #expect(try LoopbackClient(port: relay.port).request("GET", "/readyz")?.status == 503)
            #expect(relay.process.isRunning)
        }
    }

    @Test func tornTailRecoveredAtStart() throws {
        let harness = try RelayHarness()
        defer { harness.finish() }
        #expect(try harness.post(Events.portOut("pout_torn", status: "initiated")).status == 202)
        #expect(try harness.post(Events.portOut("pout_torn", status: "processing")).status == 202)
        harness.stop()
        let segment = harness.directory.path + "/data/journal/" + SegmentFile.name(for: 1)
        let intact = try Data(contentsOf: URL(fileURLWithPath: segment))
        let handle = FileHandle(forWritingAtPath: segment)!
        handle.seekToEndOfFile()
        handle.write(Data([0x40, 0, 0, 0, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3]))
        handle.closeFile()
        // A crash mid-write leaves such a tail, so in the active segment it is reported and is not damage.
        var lines: [String] = []
        #expect(try JournalCommands.verify(dataDirectory: harness.directory.path + "/data") { lines.append($0) })
        #expect(lines.first?.contains("torn tail after byte") == true, "\(lines)")
        #expect(try JournalCommands.forEachRecord(harness.directory.path + "/data") { _, _ in }.isEmpty)
        // Followed by a segment the writer prepared ahead, with no records yet, it is still the active segment's.
        let next = harness.directory.path + "/data/journal/" + SegmentFile.name(for: 2)
        #expect(FileManager.default.createFile(atPath: next, contents: Data("PORTJNL1".utf8) + Data(count: 4096)))
        #expect(try JournalCommands.verify(dataDirectory: harness.directory.path + "/data") { _ in })
        // Followed by a segment with records, it is damage.
        #expect(FileManager.default.createFile(atPath: next, contents: intact))
        #expect(!(try JournalCommands.verify(dataDirectory: harness.directory.path + "/data") { _ in }))
        try FileManager.default.removeItem(atPath: next)
        try harness.start()
        #expect(try harness.post(Events.portOut("pout_torn", status: "processing")).status == 200)
        #expect(try harness.post(Events.portOut("pout_torn", status: "issued")).status == 202)
        harness.stop()
        #expect(try JournalCommands.verify(dataDirectory: harness.directory.path + "/data") { _ in })
        #expect(try Self.eventCount(harness.directory.path + "/data") == 3)
    }

    /// Mounts a 128 MiB ext4 file system on a loop device at `data` in `directory`, which fsfreeze can freeze, and
    /// returns its path with the function that unmounts and detaches it.
    static func mountFreezableDisk(in directory: TemporaryDirectory) throws -> (mount: String, detach: () -> Void) {
        let image = directory.file("disk.img")
        #expect(FileManager.default.createFile(atPath: image, contents: nil))
        let imageFile = try #require(FileHandle(forWritingAtPath: image))
        try imageFile.truncate(atOffset: 128 << 20)
        try imageFile.close()
        let (attached, device) = runProgramCapturingOutput(
            "/usr/sbin/losetup", ["-f", "--show", image], inputPath: "/dev/null")
        try #require(attached == 0, "losetup: \(device)")
        let loop = device.trimmingCharacters(in: .whitespacesAndNewlines)
        let mount = directory.path + "/data"
        do {
            try #require(runProgram("/usr/sbin/mkfs.ext4", ["-q", loop]) == 0)
            try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
            try #require(runProgram("/bin/mount", [loop, mount]) == 0)
        } catch {
            _ = runProgram("/usr/sbin/losetup", ["-d", loop])
            throw error
        }
        return (mount, {
            _ = runProgram("/bin/umount", [mount])
            _ = runProgram("/usr/sbin/losetup", ["-d", loop])
        })
    }

    /// While an abandonment's records wait for a frozen disk, the events' segments stay pinned against retention
    /// and a resume gets 409. The abandonment's response arrives once the disk thaws.
    @Test(.enabled(if: getuid() == 0, "a loop device, mount and fsfreeze need root"))
    func abandonmentPinsSegmentsUntilWritten() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (mount, detach) = try Self.mountFreezableDisk(in: directory)
        defer { detach() }
        let sink = try RecordingSink { _, _ in .init(status: 503) }
        defer { sink.shutdown() }
        let harness = try RelayHarness(destinations: AbandonTests.destinations(["d1"], url: sink.url), directory: directory)
        defer { harness.stop() }
        #expect(try harness.post(Events.portOut("pout_pin", status: "initiated")).status == 202)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.retries ?? 0 >= 1 })
        // Paused before the freeze, since a pause saves destinations.json on the disk.
        #expect(try AdminTests.admin(harness, "POST", "/admin/destinations/t1/d1/pause", token: nil).status == 200)
        #expect(waitUntil { harness.relay!.deliveryStatistics().first?.inFlight == 0 })

        try #require(runProgram("/usr/sbin/fsfreeze", ["-f", mount]) == 0)
        var thawed = false
        defer {
            if !thawed { _ = runProgram("/usr/sbin/fsfreeze", ["-u", mount]) }
        }
        let adminPort = harness.adminPort
        let answered = DispatchSemaphore(value: 0)
        let status = Mutex<Int?>(nil)
        DispatchQueue.global().async {
            let client = try? LoopbackClient(port: adminPort, readTimeoutSeconds: 60)
            let response = client?.request("POST", "/admin/destinations/t1/d1/abandon")
            status.withLock { $0 = response?.status }
            answered.signal()
        }
        #expect(waitUntil(timeoutSeconds: 20) { Self.writeInProgressSeconds(harness) ?? 0 >= 0.5 })
        #expect(harness.relay!.deliveryStatistics().first?.pending == 0)
        #expect(AbandonTests.oldestPendingSegment(harness) != nil)
        let resume = try AdminTests.admin(harness, "POST", "/admin/destinations/t1/d1/resume", token: nil)
        #expect(resume.status == 409)
        #expect(resume.json?.objectValue?["code"] == "abandonmentInProgress")
        #expect(answered.wait(timeout: .now()) == .timedOut, "the abandonment was answered while the disk was frozen")

        #expect(runProgram("/usr/sbin/fsfreeze", ["-u", mount]) == 0)
        thawed = true
        #expect(answered.wait(timeout: .now() + 20) == .success)
        #expect(status.withLock { $0 } == 200)
        #expect(AbandonTests.oldestPendingSegment(harness) == nil)
        #expect(try AdminTests.admin(harness, "POST", "/admin/destinations/t1/d1/resume", token: nil).status == 200)
    }

    /// A disk that stops responding fails no write, so the relay shows the write in progress and how long it has
    /// taken. A pause, whose save blocks the delivery thread, does not stop the metrics page either. The disk is an
    /// ext4 file system on a loop device, frozen with fsfreeze, which blocks every write to it until it is thawed.
    @Test(.enabled(if: getuid() == 0, "a loop device, mount and fsfreeze need root"))
    func frozenDiskShowsWriteInProgress() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (mount, detach) = try Self.mountFreezableDisk(in: directory)
        defer { detach() }

        let sink = try RecordingSink()
        defer { sink.shutdown() }
        let harness = try RelayHarness(
            destinations: AdminTests.destination(sink.url), extra: AdminTests.tokenConfig, directory: directory)
        defer { harness.stop() }
        #expect(try harness.post(Events.portOut("pout_frozen", status: "initiated")).status == 202)
        #expect(Self.writeInProgressSeconds(harness) == 0)

        try #require(runProgram("/usr/sbin/fsfreeze", ["-f", mount]) == 0)
        // Thawed before the relay stops, which would otherwise wait for the blocked write forever.
        var thawed = false
        defer {
            if !thawed { _ = runProgram("/usr/sbin/fsfreeze", ["-u", mount]) }
        }
        let port = harness.port
        let body = Events.portOut("pout_frozen", status: "processing")
        let headers = [("Content-Type", "application/json")]
            + RelayHarness.standardWebhooksHeaders(body, secret: RelayHarness.inboundSecret, id: "msg_frozen")
        let answered = DispatchSemaphore(value: 0)
        let status = Mutex<Int?>(nil)
        DispatchQueue.global().async {
            let client = try? LoopbackClient(port: port, readTimeoutSeconds: 60)
            let response = client?.request("POST", "/webhooks/t1", headers: headers, body: body)
            status.withLock { $0 = response?.status }
            answered.signal()
        }
        #expect(waitUntil(timeoutSeconds: 20) { Self.writeInProgressSeconds(harness) ?? 0 >= 1.5 })
        #expect(answered.wait(timeout: .now()) == .timedOut, "the event was acknowledged while the disk was frozen")
        // Readiness fails once the write has taken 5 s, so that a load balancer stops sending webhooks here.
        let readiness = try harness.client()
        #expect(readiness.request("GET", "/readyz")?.status == 200)
        #expect(waitUntil(timeoutSeconds: 20) { readiness.request("GET", "/readyz")?.status == 503 })

        let adminPort = harness.adminPort
        let paused = DispatchSemaphore(value: 0)
        let pauseStatus = Mutex<Int?>(nil)
        DispatchQueue.global().async {
            let client = try? LoopbackClient(port: adminPort, readTimeoutSeconds: 60)
            let response = client?.request(
                "POST", "/admin/destinations/t1/d1/pause", headers: [("Authorization", "Bearer \(AdminTests.token)")])
            pauseStatus.withLock { $0 = response?.status }
            paused.signal()
        }
        #expect(waitUntil(timeoutSeconds: 20) {
            (try? AdminTests.metricsLines(harness).contains("portout_delivery_thread_blocked 1")) == true
        })
        #expect(Self.writeInProgressSeconds(harness) ?? 0 >= 1.5)
        #expect(paused.wait(timeout: .now()) == .timedOut, "the pause was saved while the disk was frozen")
        // The page made without the delivery thread shows the pause with its time, and leaves out the oldest pending
        // ages, which only that thread reads.
        let blockedPage = try AdminTests.metricsLines(harness)
        #expect(blockedPage.contains(#"portout_destination_mode{tenant="t1",destination="d1",mode="paused"} 1"#))
        #expect(!blockedPage.contains { $0.hasPrefix("portout_delivery_oldest_pending_age_seconds") })
        let changed = try #require(blockedPage.first {
            $0.hasPrefix(#"portout_destination_mode_changed_timestamp_seconds{tenant="t1",destination="d1"} "#)
        })
        let changedSeconds = try #require(Double(changed.split(separator: " ").last ?? ""))
        #expect(abs(changedSeconds - Date().timeIntervalSince1970) < 60, "\(changed)")

        #expect(runProgram("/usr/sbin/fsfreeze", ["-u", mount]) == 0)
        thawed = true
        #expect(answered.wait(timeout: .now() + 20) == .success)
        #expect(status.withLock { $0 } == 202)
        #expect(paused.wait(timeout: .now() + 20) == .success)
        #expect(pauseStatus.withLock { $0 } == 200)
        #expect(waitUntil { Self.writeInProgressSeconds(harness) == 0 })
        #expect(readiness.request("GET", "/readyz")?.status == 200)
        let page = try AdminTests.metricsLines(harness)
        #expect(page.contains("portout_delivery_thread_blocked 0"))
        // The event accepted after the thaw waits for the paused destination, so its age is back.
        let agePrefix = #"portout_delivery_oldest_pending_age_seconds{tenant="t1",destination="d1"} "#
        #expect(page.contains { $0.hasPrefix(agePrefix) })
    }

    /// Returns `portout_journal_write_in_progress_seconds` from the admin listener's metrics page.
    static func writeInProgressSeconds(_ harness: RelayHarness) -> Double? {
        guard let lines = try? AdminTests.metricsLines(harness) else { return nil }
        let prefix = "portout_journal_write_in_progress_seconds "
        return lines.first { $0.hasPrefix(prefix) }.flatMap { Double($0.dropFirst(prefix.count)) }
    }
}
