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
    figures = deliver(context, f"delivery-{destinations}", data, names, records, 8 * destinations)
    label = f"{destinations} destination" + ("s" if destinations > 1 else "")
    return delivery_rows(f"delivery rate, {label}", figures, target=True)


def pending_port_outs(context):
    """Delivery rate when many port outs each have several statuses pending, in arrival order.

    The relay sends one port out's statuses one at a time and in order, so this measures its per-port-out
    lanes with every lane busy.
    """
    port_outs = context.arguments.pending_port_outs
    records = 4 * port_outs
    data = context.journal("delivery-pending", records, "--port-outs", str(port_outs), "--destinations", "sink0")
    figures = deliver(context, "delivery-pending", data, ["sink0"], records, 8)
    return delivery_rows(f"delivery rate, {port_outs:,} port outs x 4 statuses pending", figures, target=False)


def delivery_rows(label, figures, target):
    """Return the rows of one delivery run: beside wrk, with the 0.5x target if `target`, and beside libcurl."""
    rate, connections = figures["rate"], figures["connections"]
    wrk_rates, curl_rates = figures["wrkRates"], figures["curlRates"]
    wrk_rate, curl_rate = sum(wrk_rates) / len(wrk_rates), sum(curl_rates) / len(curl_rates)
    return [
        row(label, rate, wrk_rate, "req/s", f"wrk -c{connections} to the same nginx sink",
            target=">= 0.5x" if target else None, ok=rate >= 0.5 * wrk_rate if target else None,
            runs={"relay": [rate], "reference": wrk_rates}),
        row(label, rate, curl_rate, "req/s", ceiling_name(connections),
            runs={"relay": [rate], "reference": curl_rates}),
    ]


def ceiling_name(connections):
    return f"libcurl alone, {connections} connections"


def deliver(context, name, data, destinations, records, reference_connections):
    """Measure wrk and libcurl alone against an nginx sink, then the relay's deliveries from `data`, then both
    references again.

    Return the relay's rate, each run's rate of wrk and of libcurl, and the connection count the references
    used. The references run before and after the relay, so that a machine whose speed drifts moves their mean
    and the relay alike. The relay's clock starts at process start, so it includes replaying the journal and
    the relay's rate is a lower bound.
    """
    access_log = os.path.join(context.work, f"sink-{name}.log")
    sink = start_nginx(context.work, SINK_PORT, "return 204;", access_log=access_log)
    expected = records * len(destinations)
    body_file = os.path.join(context.work, "body.json")
    with open(body_file, "w") as handle:
        handle.write("x" * BODY_BYTES)
    sink_url = f"http://127.0.0.1:{SINK_PORT}/sink0"
    wrk_rates, curl_rates = [], []
    try:
        wrk_rates.append(wrk_body(sink_url, body_file, context.duration, reference_connections)["rate"])
        curl_rates.append(curl_alone(context, sink_url, expected, reference_connections)["rate"])
        # The references' requests are in the access log too, so the relay's deliveries are counted from its end.
        offset = os.path.getsize(access_log)
        started = time.time()
        relay = start_relay(context.relay_binary, context.work, name, data=data, wait=False,
                            destinations=destinations)
        try:
            delivered = wait_for_lines(access_log, offset, expected, deadline=started + 300)
            elapsed = time.time() - started
        finally:
            stop(relay)
        curl_rates.append(curl_alone(context, sink_url, expected, reference_connections)["rate"])
        wrk_rates.append(wrk_body(sink_url, body_file, context.duration, reference_connections)["rate"])
    finally:
        stop(sink)
    if delivered < expected:
        raise RuntimeError(f"only {delivered:,} of {expected:,} deliveries arrived within 300 s")
    return {"rate": expected / elapsed, "wrkRates": wrk_rates, "curlRates": curl_rates,
            "connections": reference_connections}


def curl_alone(context, url, requests, connections):
    """Post `requests` bodies of the delivery size with `portout-bench curl` and return its figures with `rate`."""
    output = subprocess.run([context.bench_binary, "curl", "--url", url, "--requests", str(requests),
                             "--connections", str(connections), "--body-bytes", str(BODY_BYTES)],
                            check=True, capture_output=True, text=True).stdout
    figures = json.loads(output.strip().splitlines()[-1])
    figures["rate"] = figures["requests"] / (figures["durationUs"] / 1e6)
    return figures


def wait_for_lines(path, offset, expected, deadline):
    """Wait until `path` has `expected` lines after byte `offset`, or until `deadline`, and return the count."""
    counted = 0
    with open(path, "rb") as handle:
        handle.seek(offset)
        # Reads only what was appended since the last look, so the wait costs little CPU beside the relay.
        while True:
            counted += handle.read().count(b"\n")
            if counted >= expected or time.time() >= deadline:
                return counted
            time.sleep(0.05)


def count_lines(path):
    try:
        with open(path, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except FileNotFoundError:
        return 0
