"""Ingest benchmarks: the relay beside nginx and Debian's `webhook` at 32 connections, a sweep of offered
connections, and ack latency at a fixed offered rate."""
import base64
import os

from context import REFERENCE_EVENTS
from loads import open_loop, wrk_events
from report import row
from servers import INBOUND_SECRET, NGINX_PORT, RELAY_PORT, WEBHOOK_PORT, start_nginx, start_relay, start_webhook, stop

# The body imitates the relay's receipt. nginx reads and discards the request body before it responds.
FIXED_202 = "return 202 '{\"object\":\"receipt\",\"id\":\"evt_x\",\"duplicate\":false,\"stale\":false}';"
INGEST_PATH = "/webhooks/bench"


def ingest(context):
    """Relay ingest at 32 connections beside nginx's fixed 202 and beside webhook's HMAC-SHA256 rule.

    Each server gets two runs, in the order nginx, webhook, relay, relay, webhook, nginx, and each figure is the
    mean of its two runs. A machine whose speed drifts steadily during the part then moves the relay and both
    references alike, where runs in a row would credit the drift to whichever server ran last.
    """
    duration = context.duration
    events, reference_events = context.relay_events(duration), context.reference_events()
    reference_runs, hook_runs, measured_runs = [], [], []

    reference_runs.append(nginx_wrk(context, reference_events, duration))
    hook_runs.append(webhook_wrk(context, reference_events, duration))
    for run in (1, 2):
        measured_runs.append(relay_wrk(context, f"ingest-{run}", events, duration, 32))
    hook_runs.append(webhook_wrk(context, reference_events, duration))
    reference_runs.append(nginx_wrk(context, reference_events, duration))
    for hook in hook_runs:
        check_responses(hook, "webhook")
    measured, reference, hook = paired(measured_runs), paired(reference_runs), paired(hook_runs)

    nginx_name, webhook_name = "nginx fixed 202", "webhook, payload-hmac-sha256 rule"
    rows = [
        row("ingest rate, 32 connections", measured["rate"], reference["rate"], "req/s", nginx_name,
            target=">= 0.5x", ok=measured["rate"] >= 0.5 * reference["rate"],
            runs=run_rates(measured_runs, reference_runs)),
        row("ingest rate, 32 connections", measured["rate"], hook["rate"], "req/s", webhook_name,
            target=">= 5x", ok=measured["rate"] >= 5 * hook["rate"], runs=run_rates(measured_runs, hook_runs)),
    ]
    for label, key in (("p50", "p50Us"), ("p99", "p99Us"), ("p99.9", "p999Us")):
        target, ok = (("<= 5 ms", measured[key] <= 5000) if key == "p99Us" else (None, None))
        rows.append(row(f"ingest latency {label}", measured[key] / 1000, reference[key] / 1000, "ms", nginx_name,
                        target=target, ok=ok))
    for label, key in (("p50", "p50Us"), ("p99", "p99Us"), ("p99.9", "p999Us")):
        rows.append(row(f"ingest latency {label}", measured[key] / 1000, hook[key] / 1000, "ms", webhook_name))
    return rows


def nginx_wrk(context, events, duration):
    nginx = start_nginx(context.work, NGINX_PORT, FIXED_202)
    try:
        return wrk_events(NGINX_PORT, events, duration, path=INGEST_PATH)
    finally:
        stop(nginx)


def webhook_wrk(context, events, duration):
    webhook = start_webhook(context.work, base64.b64decode(INBOUND_SECRET.removeprefix("whsec_")))
    try:
        return wrk_events(WEBHOOK_PORT, events, duration, path="/hooks/bench")
    finally:
        stop(webhook)


def paired(runs):
    """Return the mean of each figure over `runs`, wrk's figures from runs of the same server.

    For latencies this is an approximation, because the mean of two runs' percentiles is not the percentile of
    their requests taken together, which wrk does not report.
    """
    return {key: sum(run[key] for run in runs) / len(runs) for key in ("rate", "p50Us", "p99Us", "p999Us")}


def run_rates(measured_runs, reference_runs):
    """Return each run's rate, the relay's and the reference's, in the order they ran, for the results page."""
    return {"relay": [run["rate"] for run in measured_runs], "reference": [run["rate"] for run in reference_runs]}


def sweep(context):
    """Relay ingest and nginx's fixed 202 at each offered connection count; returns the points, no rows."""
    duration = context.arguments.sweep_duration
    events, reference_events = context.relay_events(duration), context.reference_events()
    points = []
    nginx = start_nginx(context.work, NGINX_PORT, FIXED_202)
    try:
        references = {count: wrk_events(NGINX_PORT, reference_events, duration, count, path=INGEST_PATH)
                      for count in context.arguments.sweep_connections}
    finally:
        stop(nginx)
    for count in context.arguments.sweep_connections:
        measured = relay_wrk(context, f"sweep-{count}", events, duration, count)
        points.append({"connections": count, "relay": measured, "nginx": references[count]})
    return points


def ack_latency(context):
    """Ack latency at a fixed offered rate, with the open-loop generator, beside nginx's fixed 202."""
    rate, duration = context.arguments.ack_rate, context.arguments.ack_duration
    connections, warmup = context.arguments.ack_connections, 1
    # One file for both servers, since the generator sends each event once.
    events = context.events(max(REFERENCE_EVENTS, rate * (duration + warmup)))

    nginx = start_nginx(context.work, NGINX_PORT, FIXED_202)
    try:
        reference = open_loop(context.bench_binary, NGINX_PORT, events, rate, duration, connections, warmup,
                              INGEST_PATH)
    finally:
        stop(nginx)
    relay = start_relay(context.relay_binary, context.work, "ack")
    try:
        measured = open_loop(context.bench_binary, RELAY_PORT, events, rate, duration, connections, warmup,
                             INGEST_PATH)
    finally:
        stop(relay)

    for name, figures in (("relay", measured), ("nginx", reference)):
        if figures["errors"] or figures["non2xx"]:
            raise RuntimeError(f"{name} had {figures['errors']} failed requests and {figures['non2xx']} non-2xx "
                               f"responses at {rate} req/s; first error: {figures.get('firstError')}")
    reference_name = "nginx fixed 202, same generator"
    label = f"{rate:,} req/s offered over {connections} connections"
    return [
        row(f"ack rate achieved, {label}", measured["achievedRate"], reference["achievedRate"], "req/s",
            reference_name),
        row("ack latency p50, open loop", measured["p50Us"] / 1000, reference["p50Us"] / 1000, "ms", reference_name),
        row("ack latency p99, open loop", measured["p99Us"] / 1000, reference["p99Us"] / 1000, "ms", reference_name,
            target="<= 2 ms", ok=measured["p99Us"] <= 2000),
        row("ack latency p99.9, open loop", measured["p999Us"] / 1000, reference["p999Us"] / 1000, "ms",
            reference_name),
        # The generator's own lateness: a request sent over 1 ms after its scheduled time waited in the generator,
        # and that wait is part of its latency.
        row("ack requests sent over 1 ms late", measured["lateSends"], reference["lateSends"], "requests",
            reference_name),
    ]


def relay_wrk(context, name, events, duration, connections):
    """Start a relay on an empty data directory, load it with wrk, stop it and return wrk's figures."""
    relay = start_relay(context.relay_binary, context.work, name)
    try:
        return relay_wrk_running(context, relay, events, duration, connections)
    finally:
        stop(relay)


def relay_wrk_running(context, relay, events, duration, connections):
    """Load a running relay with wrk and return wrk's figures, after checking every response and event."""
    measured = wrk_events(RELAY_PORT, events, duration, connections)
    if relay.poll() is not None:
        raise RuntimeError(f"the relay exited with status {relay.returncode} during the wrk run")
    check_responses(measured, "the relay")
    check_unique(context, measured, events)
    return measured


def check_responses(figures, name):
    if figures["non2xx"] or figures["socketErrors"]:
        raise RuntimeError(f"{name} returned non-2xx statuses to {figures['non2xx']} requests, and "
                           f"{figures['socketErrors']} failed on the socket")


def check_unique(context, figures, events):
    """Raise when wrk sent more requests than the file has events, since repeats would be cheap duplicates."""
    available = context.events_count(events)
    # NOTE: each wrk thread wraps around its own share of the file, so one thread can repeat events while the
    # total is still below the count. Both threads carry the same number of connections, so the gap is small.
    if figures["requests"] > available:
        raise RuntimeError(f"wrk sent {figures['requests']:,} requests but {os.path.basename(events)} has only "
                           f"{available:,} unique events, so the relay received duplicates. Raise --max-ingest-rate.")
