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
    """

let arguments = Array(CommandLine.arguments.dropFirst())
do {
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
