// portout-bench: writes a synthetic journal for the start-up, memory and delivery benchmarks, so they do not
// depend on pushing a million events through HTTP first.
import Foundation
import PortoutCore

let usage = """
    usage: portout-bench journal --data-dir DIR --records N [--statuses-per-port-out K | --port-outs P]
                                 [--tenant ID] [--project ID] [--destinations A,B]

    Writes N accepted port-out events to DIR/journal, as the relay would journal them, each fanned
    out to the listed destinations and not yet delivered. By default each port out gets K consecutive events
    (1 to 4, default 1): initiated, processing, issued and completed in turn, so N / K port outs. With
    --port-outs P, the events go round-robin over P port outs instead, so every port out has up to
    ceil(N / P) statuses pending at once (N must be at most 4 * P).
    """

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
