// portout-bench: writes a synthetic journal for the start-up, memory and delivery benchmarks, so they do not
// depend on pushing a million events through HTTP first.
import Dispatch
import Foundation
import Synchronization
import PortoutCore
import PortoutJournal
import PortoutRelay

let usage = """
    usage: portout-bench journal --data-dir DIR --records N [--statuses-per-port-out K] [--tenant ID]
                                 [--project ID] [--destinations A,B]

    Writes N accepted port-out events to DIR/journal, as the relay would journal them, each fanned out to the
    listed destinations and not yet delivered. Each port out gets K consecutive events (1 to 4, default 1),
    initiated, processing, issued and completed in turn, so N / K port outs.
    """

func option(_ name: String, in arguments: [String]) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

let lifecycle: [PortOutStatus] = [.initiated, .processing, .issued, .completed]

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

func writeJournal(_ arguments: [String]) throws -> Int32 {
    guard let dataDirectory = option("--data-dir", in: arguments),
        let records = option("--records", in: arguments).flatMap(Int.init), records > 0
    else {
        StandardError.write(usage + "\n")
        return 2
    }
    let statusesPerPortOut = option("--statuses-per-port-out", in: arguments).flatMap(Int.init) ?? 1
    guard (1...4).contains(statusesPerPortOut) else {
        StandardError.write("--statuses-per-port-out must be 1 to 4\n")
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
        let portOutIndex = index / statusesPerPortOut
        let status = lifecycle[index % statusesPerPortOut]
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

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    switch arguments.first {
    case "journal": exit(try writeJournal(arguments))
    default:
        StandardError.write(usage + "\n")
        exit(2)
    }
} catch {
    StandardError.write("portout-bench: \(error)\n")
    exit(1)
}
