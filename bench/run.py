#!/usr/bin/env python3
"""`make bench`: measure the relay beside reference servers in the same run, on this machine, and print a table.

Ingest: wrk posts unique pre-signed events over 32 keep-alive connections to the relay (each one verified,
journaled with fdatasync and acknowledged), and the same wrk configuration to nginx returning a fixed 202.
Delivery: the relay starts on a journal of undelivered events and sends them to an nginx sink, beside wrk's own
rate against that sink with as many connections as the relay uses. Memory and start-up: the RSS of an idle
relay and of a relay after replaying a 1,000,000-record journal, and the time until the latter's /readyz
responds. Read API: retrieve and list over 100,000 port outs, beside nginx returning fixed bodies.

Everything listens on 127.0.0.1; every run is bounded in time. Figures go to standard output and to
bench/out/results.json.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
INBOUND_SECRET = "whsec_YmVuY2gtaW5ib3VuZC1zZWNyZXQtMDAwMDAwMDA="
OUTBOUND_SECRET = "whsec_YmVuY2gtb3V0Ym91bmQtc2VjcmV0LTAwMDAwMDA="
NGINX_PORT = 18180
SINK_PORT = 18181
RELAY_PORT = 18182


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--binary", required=True, help="release build of portout-relay")
    parser.add_argument("--bench-binary", help="release build of portout-bench (default: beside --binary)")
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--delivery-events", type=int, default=60000, help="undelivered events per delivery run")
    parser.add_argument("--replay-records", type=int, default=1000000, help="records in the start-up journal")
    parser.add_argument("--read-port-outs", type=int, default=100000, help="port outs in state for the read API")
    arguments = parser.parse_args()
    bench_binary = arguments.bench_binary or os.path.join(os.path.dirname(arguments.binary), "portout-bench")
    work = tempfile.mkdtemp(prefix="portout-bench-")
    results = []
    try:
        results += ingest(arguments, work)
        results += delivery(arguments, bench_binary, work, destinations=1)
        results += delivery(arguments, bench_binary, work, destinations=4)
        results += memory_and_startup(arguments, bench_binary, work)
        results += read_api(arguments, bench_binary, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "results.json"), "w") as handle:
        json.dump({"machine": machine(), "results": results}, handle, indent=1)


# ---- ingest ------------------------------------------------------------------------------------------------

def ingest(arguments, work):
    events = os.path.join(work, "events.tsv")
    # Enough unique events that wrk never wraps around to duplicates at up to 60,000 requests a second.
    count = 60000 * arguments.duration
    subprocess.run([sys.executable, os.path.join(HERE, "signed-events.py"), "--count", str(count),
                    "--secret", INBOUND_SECRET, "--out", events], check=True)
    # Written back now, so that flushing the large events file does not slow the relay's fdatasync calls.
    os.sync()
    nginx = start_nginx(work, NGINX_PORT, "return 202 '{\"object\":\"receipt\",\"id\":\"evt_x\",\"duplicate\":false,\"stale\":false}';")
    try:
        reference = run_wrk(NGINX_PORT, events, arguments.duration, "/webhooks/bench")
    finally:
        stop(nginx)
    relay = start_relay(arguments.binary, work, "ingest", destinations=[])
    try:
        measured = run_wrk(RELAY_PORT, events, arguments.duration, "/webhooks/bench")
    finally:
        stop(relay)
    assert measured["non2xx"] == 0, f"relay answered {measured['non2xx']} requests with non-2xx"
    return [
        row("ingest rate, 32 connections", measured["rate"], reference["rate"], "req/s", "nginx fixed 202",
            target=">= 0.5x", ok=measured["rate"] >= 0.5 * reference["rate"]),
        row("ingest latency p50", measured["p50Us"] / 1000, reference["p50Us"] / 1000, "ms", "nginx fixed 202"),
        row("ingest latency p99", measured["p99Us"] / 1000, reference["p99Us"] / 1000, "ms", "nginx fixed 202",
            target="<= 5 ms", ok=measured["p99Us"] <= 5000),
        row("ingest latency p99.9", measured["p999Us"] / 1000, reference["p999Us"] / 1000, "ms", "nginx fixed 202"),
    ]


def run_wrk(port, events, duration, target):
    output = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{duration}s", "--timeout", "5s", "-s", os.path.join(HERE, "signed-events.lua"),
         f"http://127.0.0.1:{port}", "--", events, "2", target],
        check=True, capture_output=True, text=True).stdout
    figures = json.loads(output.strip().splitlines()[-1])
    figures["rate"] = figures["requests"] / (figures["durationUs"] / 1e6)
    return figures


# ---- delivery ----------------------------------------------------------------------------------------------

def delivery(arguments, bench_binary, work, destinations):
    names = [f"sink{index}" for index in range(destinations)]
    data = os.path.join(work, f"delivery-{destinations}")
    subprocess.run([bench_binary, "journal", "--data-dir", data, "--records", str(arguments.delivery_events),
                    "--tenant", "bench", "--destinations", ",".join(names)], check=True, capture_output=True)
    access_log = os.path.join(work, f"sink-{destinations}.log")
    sink = start_nginx(work, SINK_PORT, "return 204;", access_log=access_log)
    expected = arguments.delivery_events * destinations
    try:
        relay = start_relay(arguments.binary, work, f"delivery-{destinations}", destinations=names, data=data)
        try:
            started = time.time()
            deadline = started + 300
            while count_lines(access_log) < expected and time.time() < deadline:
                time.sleep(0.05)
            elapsed = time.time() - started
            delivered = count_lines(access_log)
        finally:
            stop(relay)
        body_file = os.path.join(work, "body.json")
        with open(body_file, "w") as handle:
            handle.write("x" * 560)
        connections = 8 * destinations
        output = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{arguments.duration}s", "-s",
             os.path.join(HERE, "post-body.lua"), f"http://127.0.0.1:{SINK_PORT}/sink0", "--", body_file],
            check=True, capture_output=True, text=True).stdout
        reference = json.loads(output.strip().splitlines()[-1])
        reference_rate = reference["requests"] / (reference["durationUs"] / 1e6)
    finally:
        stop(sink)
    assert delivered >= expected, f"only {delivered} of {expected} deliveries arrived"
    # The clock starts at process start, so it includes replaying the journal; the rate is a lower bound.
    rate = expected / elapsed
    return [row(f"delivery rate, {destinations} destination(s)", rate, reference_rate, "req/s",
                f"wrk -c{connections} to the same nginx sink", target=">= 0.5x", ok=rate >= 0.5 * reference_rate)]


def count_lines(path):
    try:
        with open(path, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


# ---- memory and start-up -----------------------------------------------------------------------------------

def memory_and_startup(arguments, bench_binary, work):
    idle = start_relay(arguments.binary, work, "idle", destinations=[])
    time.sleep(1)
    idle_rss = rss_mib(idle.pid)
    stop(idle)
    # A realistic journal: each port out has four statuses, so 1,000,000 records hold 1,000,000 dedupe keys
    # and 250,000 port outs. The worst case, one record per port out, is measured too.
    data = os.path.join(work, "replay")
    subprocess.run([bench_binary, "journal", "--data-dir", data, "--records", str(arguments.replay_records),
                    "--statuses-per-port-out", "4", "--tenant", "bench"], check=True, capture_output=True)
    startup, loaded_rss = measure_startup(arguments.binary, work, data)
    shutil.rmtree(data, ignore_errors=True)
    subprocess.run([bench_binary, "journal", "--data-dir", data, "--records", str(arguments.replay_records),
                    "--tenant", "bench"], check=True, capture_output=True)
    worst_startup, worst_rss = measure_startup(arguments.binary, work, data)
    shutil.rmtree(data, ignore_errors=True)
    return [
        row("RSS idle", idle_rss, None, "MiB", None, target="<= 64 MiB", ok=idle_rss <= 64),
        row(f"RSS with {arguments.replay_records:,} dedupe keys", loaded_rss, None, "MiB", None,
            target="<= 300 MiB", ok=loaded_rss <= 300),
        row(f"start-up on a {arguments.replay_records:,}-record journal", startup, None, "s", None,
            target="<= 3 s", ok=startup <= 3),
        row("RSS, one record per port out (worst case)", worst_rss, None, "MiB", None),
        row("start-up, one record per port out (worst case)", worst_startup, None, "s", None),
    ]


def measure_startup(binary, work, data):
    """Seconds from process start until /readyz responds, and the RSS then."""
    started = time.time()
    relay = start_relay(binary, work, "replay", destinations=[], data=data, wait=False)
    wait_ready(RELAY_PORT, relay, timeout=120)
    startup = time.time() - started
    rss = rss_mib(relay.pid)
    stop(relay)
    return startup, rss


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ---- read API ----------------------------------------------------------------------------------------------

READ_KEY = "bench-read-key-0123456789"
PORT_OUT_JSON = ('{"object":"portOut","id":"pout_s000000000000","behavior":"portOut","completedAt":null,'
                 '"createdAt":"2026-11-02T08:47:00Z","expiredAt":null,"failureReason":null,"status":"initiated",'
                 '"subscription":"sub_0SNTORy8HZRd6PFFxSbd414RhJyC","user":"usr_0SNtWG5jUMVDc8uEia875rjmL6KG"}')


def read_api(arguments, bench_binary, work):
    count = arguments.read_port_outs
    idle = start_relay(arguments.binary, work, "read-idle", destinations=[], api_keys=[READ_KEY])
    time.sleep(1)
    idle_rss = rss_mib(idle.pid)
    stop(idle)
    data = os.path.join(work, "read")
    subprocess.run([bench_binary, "journal", "--data-dir", data, "--records", str(count), "--tenant", "bench"],
                   check=True, capture_output=True)
    relay = start_relay(arguments.binary, work, "read", destinations=[], data=data, api_keys=[READ_KEY])
    try:
        time.sleep(1)
        loaded_rss = rss_mib(relay.pid)
        retrieve = run_read_wrk(RELAY_PORT, arguments.duration, "/", [READ_KEY, "acme-mobile", str(count)])
        listing = run_read_wrk(RELAY_PORT, arguments.duration, "/projects/acme-mobile/portOuts?limit=10",
                               [READ_KEY, "acme-mobile"])
    finally:
        stop(relay)
    item_list = '{"object":"list","items":[' + ",".join([PORT_OUT_JSON] * 10) + '],"moreItemsAfter":"x","moreItemsBefore":null}'
    nginx = start_nginx(work, NGINX_PORT, "return 200 '" + PORT_OUT_JSON + "';")
    try:
        reference_retrieve = run_read_wrk(NGINX_PORT, arguments.duration, "/", [READ_KEY, "acme-mobile", str(count)])
    finally:
        stop(nginx)
    nginx = start_nginx(work, NGINX_PORT, "return 200 '" + item_list + "';")
    try:
        reference_list = run_read_wrk(NGINX_PORT, arguments.duration, "/projects/acme-mobile/portOuts?limit=10",
                                      [READ_KEY, "acme-mobile"])
    finally:
        stop(nginx)
    assert retrieve["non2xx"] == 0, "the read API returned non-2xx statuses to retrieve requests"
    assert listing["non2xx"] == 0, "the read API returned non-2xx statuses to list requests"
    per_port_out = (loaded_rss - idle_rss) * 1024 * 1024 / count
    return [
        row(f"read API retrieve, {count:,} port outs", retrieve["rate"], reference_retrieve["rate"], "req/s",
            "nginx fixed port out", target=">= 0.3x", ok=retrieve["rate"] >= 0.3 * reference_retrieve["rate"]),
        row("read API list, limit 10", listing["rate"], reference_list["rate"], "req/s", "nginx fixed list",
            target=">= 0.3x", ok=listing["rate"] >= 0.3 * reference_list["rate"]),
        row("memory per accepted port out", per_port_out, None, "bytes", None),
    ]


def run_read_wrk(port, duration, path, script_arguments):
    output = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{duration}s", "-s", os.path.join(HERE, "read-api.lua"),
         f"http://127.0.0.1:{port}{path}", "--"] + script_arguments,
        check=True, capture_output=True, text=True).stdout
    figures = json.loads(output.strip().splitlines()[-1])
    figures["rate"] = figures["requests"] / (figures["durationUs"] / 1e6)
    return figures


# ---- processes ---------------------------------------------------------------------------------------------

def start_relay(binary, work, name, destinations, data=None, wait=True, api_keys=()):
    data = data or os.path.join(work, f"relay-{name}")
    config = {
        "listen": f"127.0.0.1:{RELAY_PORT}", "dataDir": data, "logLevel": "warning", "eventLoops": 2,
        # The benchmark reads no admin endpoint, so the admin listener takes any free port.
        "admin": {"listen": "127.0.0.1:0"},
        "tenants": [{
            "id": "bench", "projects": ["acme-mobile"], "verify": {"secrets": [INBOUND_SECRET]},
            "apiKeys": list(api_keys),
            "destinations": [{"id": destination, "url": f"http://127.0.0.1:{SINK_PORT}/{destination}",
                              "secret": OUTBOUND_SECRET} for destination in destinations],
        }],
    }
    path = os.path.join(work, f"relay-{name}.json")
    with open(path, "w") as handle:
        json.dump(config, handle)
    log = open(os.path.join(work, f"relay-{name}.log"), "ab")
    process = subprocess.Popen([binary, "serve", "--config", path], stderr=log)
    if wait:
        wait_ready(RELAY_PORT, process)
    return process


def start_nginx(work, port, location_body, access_log=None):
    prefix = os.path.join(work, f"nginx-{port}")
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    log_line = f"access_log {access_log} bare;" if access_log else "access_log off;"
    user = "user root;" if os.geteuid() == 0 else ""
    conf = f"""
{user}
worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format bare '$status';
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        {log_line}
        location / {{ default_type application/json; {location_body} }}
    }}
}}
"""
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as handle:
        handle.write(conf)
    process = subprocess.Popen(["nginx", "-p", prefix, "-c", path], stderr=subprocess.DEVNULL)
    wait_ready(port, process, path="/")
    return process


def wait_ready(port, process, path="/readyz", timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process on port {port} exited with status {process.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing responded on port {port} within {timeout} s")


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---- output ------------------------------------------------------------------------------------------------

def row(name, value, reference, unit, reference_name, target=None, ok=None):
    return {"name": name, "value": value, "reference": reference, "unit": unit, "referenceName": reference_name,
            "target": target, "ok": ok}


def print_table(results):
    print(f"\n{'measure':<44} {'relay':>12} {'reference':>12} {'ratio':>7}  {'target':<10} {'':<4} reference")
    for result in results:
        reference = result["reference"]
        ratio = f"{result['value'] / reference:.2f}x" if reference else ""
        verdict = ""
        if result["ok"] is not None:
            verdict = "ok" if result["ok"] else "MISS"
        print(f"{result['name']:<44} {format_value(result['value'], result['unit']):>12} "
              f"{format_value(reference, result['unit']) if reference else '':>12} {ratio:>7}  "
              f"{result['target'] or '':<10} {verdict:<4} {result['referenceName'] or ''}")
    print(f"\nmachine: {machine()}")


def format_value(value, unit):
    if unit in ("req/s", "bytes"):
        return f"{value:,.0f} {unit}"
    return f"{value:.2f} {unit}"


def machine():
    cpus = os.cpu_count()
    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{cpus} CPUs, {model}"


if __name__ == "__main__":
    main()
