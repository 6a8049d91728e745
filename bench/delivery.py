"""Delivery benchmarks: the relay starts on a journal of undelivered events and sends them to an nginx sink,
beside wrk's own rate against the same sink and beside libcurl alone (`portout-bench curl`)."""
import json
import os
import subprocess
import time

from loads import wrk_body
from report import row
from servers import SINK_PORT, start_nginx, start_relay, stop

# About the size of the event bodies `portout-bench journal` writes, for the references' requests.
BODY_BYTES = 560


def fan_out(context, destinations):
    """Delivery rate of one port out per event, to 1 or more destinations."""
    names = [f"sink{index}" for index in range(destinations)]
    records = context.arguments.delivery_events
    data = context.journal(f"delivery-{destinations}", records, "--destinations", ",".join(names))
    rate, reference_rate, ceiling_rate, connections = deliver(context, f"delivery-{destinations}", data, names,
                                                              records, 8 * destinations)
    label = f"{destinations} destination" + ("s" if destinations > 1 else "")
    return [row(f"delivery rate, {label}", rate, reference_rate, "req/s",
                f"wrk -c{connections} to the same nginx sink", target=">= 0.5x", ok=rate >= 0.5 * reference_rate),
            row(f"delivery rate, {label}", rate, ceiling_rate, "req/s", ceiling_name(connections))]


def pending_port_outs(context):
    """Delivery rate when many port outs each have several statuses pending, in arrival order.

    The relay sends one port out's statuses one at a time and in order, so this measures its per-port-out
    lanes with every lane busy.
    """
    port_outs = context.arguments.pending_port_outs
    records = 4 * port_outs
    data = context.journal("delivery-pending", records, "--port-outs", str(port_outs), "--destinations", "sink0")
    rate, reference_rate, ceiling_rate, connections = deliver(context, "delivery-pending", data, ["sink0"],
                                                              records, 8)
    label = f"delivery rate, {port_outs:,} port outs x 4 statuses pending"
    return [row(label, rate, reference_rate, "req/s", f"wrk -c{connections} to the same nginx sink"),
            row(label, rate, ceiling_rate, "req/s", ceiling_name(connections))]


def ceiling_name(connections):
    return f"libcurl alone, {connections} connections"


def deliver(context, name, data, destinations, records, reference_connections):
    """Start the relay on `data`, time its deliveries, then measure wrk and libcurl alone against the same sink.

    Returns the relay's rate, wrk's rate, libcurl's rate and the connection count both used. The clock starts
    at process start, so it includes replaying the journal and the relay's rate is a lower bound.
    """
    access_log = os.path.join(context.work, f"sink-{name}.log")
    sink = start_nginx(context.work, SINK_PORT, "return 204;", access_log=access_log)
    expected = records * len(destinations)
    try:
        started = time.time()
        relay = start_relay(context.relay_binary, context.work, name, data=data, wait=False,
                            destinations=destinations)
        try:
            delivered = wait_for_lines(access_log, expected, deadline=started + 300)
            elapsed = time.time() - started
        finally:
            stop(relay)
        body_file = os.path.join(context.work, "body.json")
        with open(body_file, "w") as handle:
            handle.write("x" * BODY_BYTES)
        reference = wrk_body(f"http://127.0.0.1:{SINK_PORT}/sink0", body_file, context.duration,
                             reference_connections)
        ceiling = curl_alone(context, f"http://127.0.0.1:{SINK_PORT}/sink0", expected, reference_connections)
    finally:
        stop(sink)
    if delivered < expected:
        raise RuntimeError(f"only {delivered:,} of {expected:,} deliveries arrived within 300 s")
    return expected / elapsed, reference["rate"], ceiling["rate"], reference_connections


def curl_alone(context, url, requests, connections):
    """Post `requests` bodies of the delivery size with `portout-bench curl` and return its figures with `rate`."""
    output = subprocess.run([context.bench_binary, "curl", "--url", url, "--requests", str(requests),
                             "--connections", str(connections), "--body-bytes", str(BODY_BYTES)],
                            check=True, capture_output=True, text=True).stdout
    figures = json.loads(output.strip().splitlines()[-1])
    figures["rate"] = figures["requests"] / (figures["durationUs"] / 1e6)
    return figures


def wait_for_lines(path, expected, deadline):
    while count_lines(path) < expected and time.time() < deadline:
        time.sleep(0.05)
    return count_lines(path)


def count_lines(path):
    try:
        with open(path, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except FileNotFoundError:
        return 0
