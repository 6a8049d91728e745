// portout-bench: tools for bench/run.py. `journal` writes a synthetic journal for the start-up, memory and
// delivery benchmarks, so they do not depend on pushing a million events through HTTP first. `load` sends
// pre-signed events at a fixed rate and measures latency from each request's scheduled send time. `curl` measures
// libcurl's own rate against a delivery sink, which caps the relay's delivery rate. `sync` times the disk's
// fdatasync alone, which bounds the relay's ack latency.
import Foundation
import PortoutCore

let usage = """
    usage: portout-bench journal --data-dir DIR --records N [--statuses-per-port-out K | --port-outs P]
                                 [--tenant ID] [--project ID] [--destinations A,B]
           portout-bench load --url http://127.0.0.1:PORT --events FILE --rate N --duration SECONDS
                              [--warmup SECONDS] [--connections N] [--path PATH] [--timeout-ms MS]
           portout-bench curl --url http://127.0.0.1:PORT/PATH --requests N [--connections C] [--threads T]
                              [--body-bytes B]
           portout-bench sync --dir DIR --writes N [--record-bytes B] [--busy-threads K]

    journal: writes N accepted port-out events to DIR/journal, as the relay would journal them, each fanned
    out to the listed destinations and not yet delivered. By default each port out gets K consecutive events
    (1 to 4, default 1): initiated, processing, issued and completed in turn, so N / K port outs. With
    --port-outs P, the events go round-robin over P port outs instead, so every port out has up to
    ceil(N / P) statuses pending at once (N must be at most 4 * P).

    load: an open-loop load generator. It sends the events of FILE (bench/signed_events.py's format), one per
    request, at N requests per second in total over the keep-alive connections (default 16), for the
    warm-up (default 1 s, not recorded) and then the duration. Each request has a scheduled send time, and
    its latency runs from that time to the end of its response, so a slow response also counts against the
    requests queued behind it. Loopback addresses only. Prints one JSON line of figures.

    curl: posts a body of B bytes (default 560) N times with libcurl, over C connections (default 8) split
    across T threads (default: the relay's delivery.transferThreads default), each with its own multi handle,
    and with the relay's delivery headers. Nothing else happens per request, so the rate is a ceiling for
    the relay's delivery rate to the same URL. Loopback addresses only. Prints one JSON line of figures and
    exits with 1 if any request did not get a 2xx.

    sync: creates a file with a fresh name in DIR, zeroes and syncs it, then writes B bytes (default 2048) to
    it N times, one record after another, and times the fdatasync after each write, while K threads (default
    0) spin on the CPUs. The relay's journal writer does the same before it acknowledges events, so these
    times bound its ack latency on that disk. The file is at most 1 GiB and is removed at the end, also on
    SIGINT or SIGTERM. Prints one JSON line of figures, in microseconds.
    """

/// The options each subcommand takes, every one with a value.
let knownOptions: [String: [String]] = [
    "journal": [
        "--data-dir", "--records", "--statuses-per-port-out", "--port-outs", "--tenant", "--project", "--destinations",
    ],
    "load": ["--url", "--events", "--rate", "--duration", "--warmup", "--connections", "--path", "--timeout-ms"],
    "curl": ["--url", "--requests", "--connections", "--threads", "--body-bytes"],
    "sync": ["--dir", "--writes", "--record-bytes", "--busy-threads"],
]

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    if let command = arguments.first, let known = knownOptions[command] {
        try checkOptions(Array(arguments.dropFirst()), known: known, command: command)
    }
    switch arguments.first {
    case "journal": exit(try writeJournal(arguments))
    case "load": exit(try runOpenLoopLoad(arguments))
    case "curl": exit(try runCurlCeiling(arguments))
    case "sync": exit(try runSyncProbe(arguments))
    default:
        StandardError.write(usage + "\n")
        exit(2)
    }
} catch {
    StandardError.write("portout-bench: \(error)\n")
    exit(1)
}
