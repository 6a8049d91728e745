"""Cost growth with tenants and destinations: ingest rate, deliveries and RSS at 10 tenants x 10 destinations
and at 1,000 tenants, beside the same load on one tenant with one destination."""
import os

from delivery import count_lines
from ingest import relay_wrk_running
from report import row
from servers import SINK_PORT, rss_mib, start_nginx, start_relay, stop

# (tenants, destinations per tenant); the first is the baseline that the others are compared with.
SHAPES = [(1, 1), (10, 10), (1000, 1)]


def tenants_and_destinations(context):
    """Post events spread round-robin over the tenants while the relay delivers each one to every destination
    of its tenant, all on one nginx sink."""
    figures = {shape: measure_shape(context, *shape) for shape in SHAPES}
    baseline = figures[SHAPES[0]]
    baseline_name = "same load, 1 tenant x 1 destination"
    rows = []
    for shape in SHAPES[1:]:
        measured = figures[shape]
        label = f"{shape[0]:,} tenants x {shape[1]} destination{'s' if shape[1] > 1 else ''}"
        rows += [
            row(f"ingest rate, {label}", measured["rate"], baseline["rate"], "req/s", baseline_name),
            row(f"deliveries during ingest, {label}", measured["deliveryRate"], baseline["deliveryRate"], "req/s",
                baseline_name),
            row(f"RSS after ingest, {label}", measured["rss"], baseline["rss"], "MiB", baseline_name),
        ]
    return rows


def measure_shape(context, tenants, destinations_per_tenant):
    duration = context.duration
    events = context.relay_events(duration, tenants)
    name = f"scale-{tenants}x{destinations_per_tenant}"
    access_log = os.path.join(context.work, f"sink-{name}.log")
    sink = start_nginx(context.work, SINK_PORT, "return 204;", access_log=access_log)
    try:
        destinations = [f"d{index}" for index in range(destinations_per_tenant)]
        relay = start_relay(context.relay_binary, context.work, name, tenants=tenants, destinations=destinations)
        try:
            measured = relay_wrk_running(context, relay, events, duration, 32)
            # Read while the relay still runs: the deliveries so far and the memory with the backlog in it.
            measured["deliveryRate"] = count_lines(access_log) / (measured["durationUs"] / 1e6)
            measured["rss"] = rss_mib(relay.pid)
        finally:
            stop(relay)
    finally:
        stop(sink)
    return measured
