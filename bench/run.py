#!/usr/bin/env python3
"""`make bench`: measure the relay beside reference servers in the same run, on this machine, and print a table.

Parts, in the order they run (pick some with --only, or BENCH_ONLY=a,b for make):
  ingest    wrk posts unique pre-signed events over 32 connections to the relay (each one verified,
            journaled with fdatasync and acknowledged), to nginx returning a fixed 202, and to Debian's
            `webhook` with a payload-hmac-sha256 rule.
  sweep     the relay and nginx at each offered connection count (--sweep-connections), plotted.
  ack       ack latency at a fixed offered rate with the open-loop generator `portout-bench load`, beside the
            same generator against nginx.
  delivery  the relay starts on a journal of undelivered events and sends them to an nginx sink, to 1 and to 4
            destinations, beside wrk's own rate against that sink and beside libcurl alone (`portout-bench curl`).
  memory    RSS idle, with 100,000 port outs in state and with 1,000,000 dedupe keys; start-up on a
            1,000,000-record journal, with every delivery settled and with every one pending.
  read      the read API's retrieve and list over 100,000 port outs, beside nginx returning fixed bodies.
  scale     ingest rate, deliveries and RSS at 10 tenants x 10 destinations and at 1,000 tenants beside one
            tenant with one destination, and delivery with 10,000 port outs pending at once.

Before the parts, a run that includes ingest, sweep, ack or scale times fdatasync on the work directory's disk
with `portout-bench sync`, without and beside a spinning thread, and prints it with the machine's facts.

Everything listens on 127.0.0.1, and every run is bounded in time. A full run writes bench/results.md and
bench/results.png. A run of some parts writes them under bench/out/ instead, so that it never replaces the full
record. Both write bench/out/results.json.
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import delivery
import ingest
import memory
import read_api
import report
import scale
from context import BenchContext
from loads import sync_probe

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")

# Each part returns table rows; `sweep` returns its points instead, which get their own table and the plot.
PARTS = {
    "ingest": ingest.ingest,
    "sweep": ingest.sweep,
    "ack": ingest.ack_latency,
    "delivery": lambda context: delivery.fan_out(context, 1) + delivery.fan_out(context, 4),
    "memory": memory.memory_and_startup,
    "read": read_api.read_api,
    "scale": lambda context: scale.tenants_and_destinations(context) + delivery.pending_port_outs(context),
}


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True, help="release build of portout-relay")
    parser.add_argument("--bench-binary", help="release build of portout-bench (default: beside --binary)")
    parser.add_argument("--only", type=part_list, default=list(PARTS),
                        help=f"comma-separated parts to run, from {','.join(PARTS)} (default: all)")
    parser.add_argument("--note", help="a sentence for results.md about the conditions of this run")
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run (default 8)")
    parser.add_argument("--max-ingest-rate", type=int, default=70000,
                        help="the highest relay ingest rate expected, in req/s, which sizes the unique events of "
                             "each relay run (default 70000)")
    parser.add_argument("--sweep-duration", type=int, default=5, help="seconds per sweep point (default 5)")
    parser.add_argument("--sweep-connections", type=count_list, default=[1, 4, 16, 32, 64, 128],
                        help="offered connection counts of the sweep (default 1,4,16,32,64,128)")
    parser.add_argument("--ack-rate", type=int, default=2000,
                        help="requests per second offered in the ack part (default 2000)")
    parser.add_argument("--ack-duration", type=int, default=10, help="seconds measured in the ack part (default 10)")
    parser.add_argument("--ack-connections", type=int, default=16, help="connections in the ack part (default 16)")
    parser.add_argument("--delivery-events", type=int, default=60000, help="undelivered events per delivery run")
    parser.add_argument("--pending-port-outs", type=int, default=10000,
                        help="port outs with four statuses each pending in the scale part (default 10000)")
    parser.add_argument("--state-port-outs", type=int, default=100000,
                        help="port outs in state for the RSS row (default 100000)")
    parser.add_argument("--replay-records", type=int, default=1000000, help="records in the start-up journal")
    parser.add_argument("--read-port-outs", type=int, default=100000, help="port outs in state for the read API")
    return parser.parse_args()


def part_list(text):
    parts = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"unknown part {', '.join(unknown) or '(none given)'}: "
                                         f"choose from {','.join(PARTS)}")
    # Run in the table's order whatever order they were given in.
    return [part for part in PARTS if part in parts]


def count_list(text):
    try:
        counts = [int(value) for value in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, not {text!r}")
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"every connection count must be at least 1, not {text!r}")
    return counts


def main():
    arguments = parse_arguments()
    bench_binary = arguments.bench_binary or os.path.join(os.path.dirname(arguments.binary), "portout-bench")
    started = time.time()
    work = tempfile.mkdtemp(prefix="portout-bench-")
    report_data = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "parts": arguments.only,
        "loadAverageStart": report.load_average(), "machine": report.machine(work), "results": [], "sweep": [],
        "failures": [], "partSeconds": {}, "note": arguments.note,
    }
    context = BenchContext(arguments, bench_binary, work)
    try:
        if SYNC_BOUND_PARTS.intersection(arguments.only):
            report_data["diskSync"] = disk_sync(context, report_data)
        for part in arguments.only:
            run_part(part, context, report_data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report_data["loadAverageEnd"] = report.load_average()
    report_data["elapsedSeconds"] = time.time() - started
    report.print_table(report_data["results"])
    report.print_runs(report_data["results"])
    report.print_disk_sync(report_data.get("diskSync"))
    report.print_sweep(report_data["sweep"])
    write_outputs(report_data, is_full=arguments.only == list(PARTS))
    print(f"\nmachine: {report_data['machine']['cpus']} CPUs, {report_data['machine']['cpuModel']}; "
          f"load average {report_data['loadAverageStart']} at the start, {report_data['loadAverageEnd']} at the end")
    seconds = ", ".join(f"{part} {elapsed:.0f} s" for part, elapsed in report_data["partSeconds"].items())
    print(f"total time {report_data['elapsedSeconds']:.0f} s ({seconds})")
    for name, message in report_data["failures"]:
        print(f"{name} failed: {message}", file=sys.stderr)
    sys.exit(1 if report_data["failures"] else 0)


# As many syncs as the relay makes in about a second of full ingest load, at several events a sync.
SYNC_PROBE_WRITES = 10000
# The parts whose latency or rate waits on the journal's fdatasync, and so the parts the probe explains.
SYNC_BOUND_PARTS = {"ingest", "sweep", "ack", "scale"}


def disk_sync(context, report_data):
    """Time fdatasync alone on the journals' disk, without and beside a thread spinning on one CPU.

    The relay acknowledges no event before the sync of its batch returns, and while a sync stalls, every event
    waiting on the journal waits with it. So the disk's slow syncs bound the relay's ingest latency percentiles,
    and these figures show how much of that bound is the machine's.
    """
    print("running disk sync probe ...", file=sys.stderr, flush=True)
    try:
        return {condition: sync_probe(context.bench_binary, context.work, SYNC_PROBE_WRITES, busy)
                for condition, busy in (("idle", 0), ("oneCPUBusy", 1))}
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError) as error:
        # Recorded like a failed part, so that the parts still run.
        record_failure(report_data, "disk sync probe", error)
        return None


def run_part(part, context, report_data):
    """Run one part and add its rows or sweep points; a failure is recorded so the other parts still run."""
    print(f"running {part} ...", file=sys.stderr, flush=True)
    part_started = time.time()
    try:
        figures = PARTS[part](context)
        if part == "sweep":
            report_data["sweep"] = figures
        else:
            report_data["results"] += figures
    except (RuntimeError, OSError, subprocess.SubprocessError, json.JSONDecodeError) as error:
        record_failure(report_data, f"part {part}", error)
    report_data["partSeconds"][part] = time.time() - part_started


def record_failure(report_data, name, error):
    """Add a failure, with the failed command's stderr if any, to the report and print it."""
    details = getattr(error, "stderr", None)
    message = f"{error}" + (f": {details.strip()}" if details else "")
    report_data["failures"].append((name, message))
    print(f"{name} failed: {message}", file=sys.stderr, flush=True)


def write_outputs(report_data, is_full):
    os.makedirs(OUT, exist_ok=True)
    directory = HERE if is_full else OUT
    markdown = os.path.join(directory, "results.md")
    plot_name = None
    if report_data["sweep"]:
        plot_name = "results.png"
        report.plot_sweep(report_data["sweep"], os.path.join(directory, plot_name), os.path.join(OUT, "sweep.dat"))
    readme = os.path.relpath(os.path.join(HERE, "README.md"), directory)
    report.write_markdown(markdown, report_data, plot_name, readme)
    with open(os.path.join(OUT, "results.json"), "w") as handle:
        json.dump(report_data, handle, indent=1)
    print(f"\nwritten: {os.path.relpath(markdown)}" + (f" and {plot_name}" if plot_name else ""))


if __name__ == "__main__":
    main()
