import Foundation
import PortoutCore
import PortoutJournal
import PortoutRelay

let lifecycle: [PortOutStatus] = [.initiated, .processing, .issued, .completed]

/// The mapping from journal records to port outs and statuses.
enum JournalLayout {
    /// Each port out gets this many consecutive records, one status after another.
    case consecutive(statusesPerPortOut: Int)
    /// Records go round-robin over this many port outs, so each port out's statuses are spread through the journal.
    case interleaved(portOuts: Int)

    /// Returns the port out and status of record `index`.
    func place(_ index: Int) -> (portOut: Int, status: PortOutStatus) {
        switch self {
        case .consecutive(let statusesPerPortOut):
            return (index / statusesPerPortOut, lifecycle[index % statusesPerPortOut])
        case .interleaved(let portOuts):
            return (index % portOuts, lifecycle[index / portOuts])
        }
    }
}

func body(eventID: String, portOutID: String, project: String, createdAt: String, status: PortOutStatus) -> [UInt8] {
    let completedAt = status == .completed ? "\"\(createdAt)\"" : "null"
    return Array(
        """
        {"object":"event","id":"\(eventID)","type":"\(status.eventType)","datacontenttype":"application/json",\
        "project":"\(project)","source":"https://api.gigs.com","specversion":"1.0","time":"2026-11-02T09:38:11Z",\
        "version":"2024-12-20","data":{"object":"portOut","id":"\(portOutID)","behavior":"portOut",\
        "completedAt":\(completedAt),"createdAt":"\(createdAt)","expiredAt":null,"failureReason":null,\
        "status":"\(status.rawValue)","subscription":"sub_0SNTORy8HZRd6PFFxSbd414RhJyC","user":"usr_0SNtWG5jUMVDc8uEia875rjmL6KG"}}
        """.utf8)
}

/// Reads `--statuses-per-port-out` or `--port-outs`, which exclude each other.
func journalLayout(_ arguments: [String], records: Int) throws -> JournalLayout {
    let hasStatuses = option("--statuses-per-port-out", in: arguments) != nil
    guard let portOutsText = option("--port-outs", in: arguments) else {
        let statuses = try integerOption("--statuses-per-port-out", in: arguments, range: 1...4, default: 1)
        return .consecutive(statusesPerPortOut: statuses)
    }
    if hasStatuses {
        throw UsageError("--statuses-per-port-out and --port-outs cannot be combined, so give only one of them")
    }
    let portOuts = try integerOption("--port-outs", in: arguments, range: 1...Int(Int32.max))
    // Only four statuses exist, and a fifth record for a port out would repeat one of its dedupe keys.
    guard records <= 4 * portOuts else {
        throw UsageError("--records \(records) needs --port-outs of at least \((records + 3) / 4), not \(portOutsText)")
    }
    return .interleaved(portOuts: portOuts)
}

func writeJournal(_ arguments: [String]) throws -> Int32 {
    guard let dataDirectory = option("--data-dir", in: arguments),
        let records = option("--records", in: arguments).flatMap(Int.init), records > 0
    else {
        StandardError.write(usage + "\n")
        return 2
    }
    let layout: JournalLayout
    do {
        layout = try journalLayout(arguments, records: records)
    } catch let error as UsageError {
        StandardError.write("portout-bench journal: \(error)\n")
        return 2
    }

    let tenant = option("--tenant", in: arguments) ?? "bench"
    let project = option("--project", in: arguments) ?? "acme-mobile"
    let destinations = option("--destinations", in: arguments)?.split(separator: ",").map(String.init) ?? []
    let journal = try Journal.open(
        directory: dataDirectory + "/journal", segmentBytes: 64 << 20, logger: Logger(level: .warning)
    ) { _, _ in }

    let failures = Locked<Int>(0)
    let acceptedAt = Int64(Date().timeIntervalSince1970 * 1000)
    for index in 0..<records {
        let (portOutIndex, status) = layout.place(index)
        let portOutID = String(format: "pout_s%012d", portOutIndex)
        let eventID = String(format: "evt_s%014d", index)
        // One second apart from 2026-11-02T08:47:00Z, so every port out has its own place in the list order.
        let createdAt = 1_793_609_220 + Int64(portOutIndex)
        var record = EventRecord(
            sequence: UInt64(index + 1), acceptedAtMs: acceptedAt, isStale: false, isBare: false,
            status: status, dedupeKey: IngestKeys.dedupe(tenant: tenant, portOutID: portOutID, status: status),
            lifecycleKey: IngestKeys.lifecycle(tenant: tenant, portOutID: portOutID),
            tenant: tenant, eventID: eventID, type: status.eventType, portOutID: portOutID,
            project: project, destinations: destinations,
            body: body(
                eventID: eventID, portOutID: portOutID, project: project,
                createdAt: RFC3339.format(epochSeconds: createdAt), status: status))
        record.portOutCreatedAtMs = createdAt * 1000
        record.subscription = "sub_0SNTORy8HZRd6PFFxSbd414RhJyC"
        journal.append(.event(record)) { result in
            if case .failure = result {
                failures.withLock { $0 += 1 }
            }
        }
    }
    journal.close()

    let failed = failures.withLock { $0 }
    print("wrote \(records - failed) records to \(dataDirectory)/journal")
    return failed == 0 ? 0 : 1
}
