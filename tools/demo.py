#!/usr/bin/env python3
"""`make run`: start a signature-checking sink, the relay on config.json and the carrier emulator, let the
emulator drive port outs through their lifecycle with faulty webhook delivery, print what happened, and keep
everything running until Ctrl-C.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELAY_LOG = os.path.join(ROOT, "portout-relay.log")
EMULATOR_LOG = os.path.join(ROOT, "portout-emulator.log")
PORT_OUTS = 30
SINK_PORT = 8091


def relay_log_after(offset):
    """Returns what the relay wrote to its log after `offset`, which is where this run began, since the log is
    appended to across runs."""
    try:
        with open(RELAY_LOG, "rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def print_stop_line(offset):
    """Prints the stop line that this run's relay wrote to its log, with the counts of what it left unsettled."""
    stops = [line.strip() for line in relay_log_after(offset).splitlines() if '"msg":"relay stopped"' in line]
    if stops:
        print(f"\nthe relay's stop line, from {os.path.relpath(RELAY_LOG)}:\n  {stops[-1]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--binary", required=True, help="the built portout-relay executable")
    parser.add_argument("--config", required=True, help="relay configuration")
    arguments = parser.parse_args()

    config_path = os.path.abspath(arguments.config)
    with open(config_path) as handle:
        config = json.load(handle)
    listen = config.get("listen", "127.0.0.1:8080")
    tenant = config["tenants"][0]
    secret = tenant["verify"]["secrets"][0]
    upstream = tenant.get("upstream", {})
    read_key = (tenant.get("apiKeys") or [None])[0]
    if not all(isinstance(value, str) for value in (secret, upstream.get("apiKey"), read_key)):
        sys.exit("make run needs the first tenant's first secret, apiKeys and upstream.apiKey inline in config.json")
    emulator_address = upstream["baseUrl"].removeprefix("http://")
    data_dir = os.path.join(os.path.dirname(config_path), config.get("dataDir", "data"))
    base = f"http://{listen}"

    # Another process on one of these ports would respond to the readiness checks in place of the demo's own,
    # or keep the relay from starting.
    admin_listen = config.get("admin", {}).get("listen", "127.0.0.1:9090")
    for address in (f"127.0.0.1:{SINK_PORT}", listen, admin_listen, emulator_address):
        if port_in_use(address):
            sys.exit(f"{address} is already in use, perhaps by an earlier make run; stop that process first")

    processes = []
    relay_log_offset = os.path.getsize(RELAY_LOG) if os.path.exists(RELAY_LOG) else 0

    def relay_took_stop_request():
        return '"msg":"shutdown requested"' in relay_log_after(relay_log_offset)

    def terminate_children():
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def stop(status=0, interrupted=False):
        if interrupted:
            # Ctrl-C in a terminal signals the whole process group, so the children are already stopping. A SIGINT
            # sent to this process alone reaches none of them, and then the relay logs no shutdown request.
            deadline = time.monotonic() + 1
            while not relay_took_stop_request() and time.monotonic() < deadline:
                time.sleep(0.05)
            if relay_took_stop_request():
                # The relay gives deliveries in flight up to its grace period.
                deadline = time.monotonic() + config.get("shutdownGraceSeconds", 10) + 2
                for process in processes:
                    try:
                        process.wait(timeout=max(0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        pass
        terminate_children()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        print_stop_line(relay_log_offset)
        sys.exit(status)

    interrupts = 0

    def on_interrupt(*_):
        nonlocal interrupts
        interrupts += 1
        # A further Ctrl-C runs this handler inside the first one's wait, so it sends SIGTERM and returns to it.
        if interrupts > 1:
            terminate_children()
            return
        stop(interrupted=True)
    signal.signal(signal.SIGINT, on_interrupt)
    signal.signal(signal.SIGTERM, lambda *_: stop())

    sink = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tools", "sink.py"), "--config", config_path, "--port", str(SINK_PORT)],
        stdout=subprocess.PIPE, text=True)
    processes.append(sink)
    first_line = sink.stdout.readline().strip()
    if not first_line.startswith("sink listening"):
        say("the sink did not start")
        stop(1)
    say(f"== {first_line}: it checks each delivery's signature with the standardwebhooks package")

    relay = subprocess.Popen([arguments.binary, "serve", "--config", config_path], stderr=open(RELAY_LOG, "ab"))
    processes.append(relay)
    if not wait_ready(base + "/readyz", relay):
        say(f"the relay did not start; see {RELAY_LOG}")
        stop(1)
    say(f"== relay listening on {base}, journal in {data_dir}, log lines in {RELAY_LOG}")
    admin = config.get("admin", {})
    admin_base = f"http://{admin.get('listen', '127.0.0.1:9090')}"
    admin_token = admin["token"] if isinstance(admin.get("token"), str) else None
    admin_auth = f"-H 'Authorization: Bearer {admin_token}' " if admin_token else ""
    # A pause from an earlier run is saved in the data directory; without this line its deliveries would just
    # never show up.
    for destination in destinations_not_active(admin_base, admin_token):
        tenant_id, destination_id = destination["tenant"], destination["id"]
        say(f"== destination {tenant_id}/{destination_id} is {destination['mode']} since an earlier run "
            f"({destination.get('modeReason') or 'no reason given'}); its deliveries wait until it is resumed:")
        say(f"     curl -s {admin_auth}-X POST {admin_base}/admin/destinations/{tenant_id}/{destination_id}/resume")

    projects = ",".join(project + (":uk" if project == "brit-tel" else "") for project in tenant["projects"])
    emulator = subprocess.Popen(
        [arguments.binary, "emulate", "--listen", emulator_address, "--projects", projects,
         "--api-keys", f"{upstream['apiKey']}:credentials", "--webhook-urls", f"{base}/webhooks/{tenant['id']}",
         "--webhook-secret", secret, "--port-outs", str(PORT_OUTS), "--rate", "5", "--processing-after", "1",
         "--issued-after", "2", "--finish-after", "2", "--retry-rate", "0.1", "--resend-rate", "0.1",
         "--reorder-rate", "0.1"],
        stderr=open(EMULATOR_LOG, "ab"))
    processes.append(emulator)
    if not wait_ready(f"http://{emulator_address}/healthz", emulator):
        say(f"the emulator did not start; see {EMULATOR_LOG}")
        stop(1)
    say(f"== carrier emulator on http://{emulator_address}: creating {PORT_OUTS} port outs, 5 a second, and sending "
        "each status change as a signed webhook, some twice, some again under a new id, some late")
    start_echo(sink)

    deadline = time.time() + 90
    finished = 0
    while time.time() < deadline:
        finished = terminal_count(emulator_address, upstream["apiKey"], tenant["projects"])
        if finished >= PORT_OUTS:
            break
        time.sleep(1)
    # The emulator holds back some webhooks to reorder them, so they can arrive after the last port out
    # finished. The summary waits until the relay has nothing queued and the sink has been quiet for 3 s.
    wait_until_settled(admin_base, admin_token, deadline=time.time() + 30)
    stats = subprocess.run([arguments.binary, "journal", "stats", "--data-dir", data_dir],
                           capture_output=True, text=True).stdout.strip()
    say("")
    if finished >= PORT_OUTS:
        say(f"== every generated port out reached completed, expired or failed; relay -> sink: {sink_count[0]} "
            "deliveries, each signature checked")
    else:
        say(f"== only {finished} of {PORT_OUTS} port outs finished within 90 s; relay -> sink: {sink_count[0]} "
            f"deliveries so far. See {RELAY_LOG} and {EMULATOR_LOG}")
    counts = webhook_counts(admin_base, admin_token)
    if counts is not None:
        outcomes, stale = counts
        say(f"== relay: {sum(outcomes.values()):,} webhooks received in this run: {outcomes.get('accepted', 0):,} "
            f"accepted ({stale:,} of them stale, journaled but not forwarded), "
            f"{outcomes.get('duplicate', 0):,} duplicates answered 200 and dropped")
    say(f"== journal: {stats}")
    project = tenant["projects"][0]
    say("")
    say("Next, with the relay's read API and the carrier calls it forwards to the emulator:")
    auth = f"-H 'Authorization: Bearer {read_key}'"
    say(f"  curl -s {auth} '{base}/projects/{project}/portOuts?status=completed&limit=3'")
    say(f"  curl -s {auth} -H 'Content-Type: application/json' -d '{{\"subscription\":\"sub_demo\"}}' "
        f"{base}/projects/{project}/portOuts")
    say(f"  curl -s {auth} {base}/projects/{project}/portOuts/<id from the answer above>/credentials   # once issued")
    say("And with the admin listener:")
    say(f"  curl -s {admin_auth}{admin_base}/admin/destinations")
    say(f"  curl -s {admin_auth}-X POST {admin_base}/admin/destinations/{tenant['id']}/billing/pause   # then .../resume")
    say(f"  curl -s {admin_auth}'{admin_base}/admin/deliveries?destination=billing&limit=3'   # each attempt")
    say(f"  curl -s {admin_auth}{admin_base}/metrics | grep portout_delivery_queue_depth")
    say(f"  {arguments.binary} journal dump --data-dir {data_dir} | tail")
    say(f"  tail -f {RELAY_LOG}")
    say("Everything keeps running and further deliveries are printed here; press Ctrl-C to stop.")
    while relay.poll() is None:
        time.sleep(1)
    say(f"the relay exited with status {relay.returncode}; see {RELAY_LOG}")
    stop(1)


sink_count = [0]
print_lock = threading.Lock()


def say(line):
    """Print one whole line; the sink's lines come from another thread."""
    with print_lock:
        print(line, flush=True)


def admin_get(admin_base, path, token):
    """Returns the body of a GET on the admin listener, or None, after saying why, if it could not be read."""
    request = urllib.request.Request(admin_base + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read()
    except OSError as error:
        say(f"== could not read {admin_base}{path}: {error}")
        return None


def admin_destinations(admin_base, token):
    """Returns the destinations as the admin listener lists them, or None if it could not be read."""
    body = admin_get(admin_base, "/admin/destinations", token)
    try:
        return None if body is None else json.loads(body).get("data", [])
    except ValueError as error:
        say(f"== could not read {admin_base}/admin/destinations: {error}")
        return None


def webhook_counts(admin_base, token):
    """Returns the relay's webhook requests by outcome and its count of stale events, from /metrics."""
    page = admin_get(admin_base, "/metrics", token)
    if page is None:
        return None
    outcomes, stale = {}, 0
    for line in page.decode().splitlines():
        requests = re.match(r'portout_webhook_requests_total\{.*outcome="(\w+)".*\} (\S+)$', line)
        stale_line = re.match(r'portout_stale_events_total\{.*\} (\S+)$', line)
        if requests:
            outcomes[requests[1]] = outcomes.get(requests[1], 0) + int(float(requests[2]))
        elif stale_line:
            stale += int(float(stale_line[1]))
    return outcomes, stale


def destinations_not_active(admin_base, token):
    """Returns the destinations that the admin listener reports as paused or disabled."""
    return [destination for destination in admin_destinations(admin_base, token) or []
            if destination.get("mode") != "active"]


def wait_until_settled(admin_base, token, deadline):
    """Waits until no active destination has a delivery queued or in flight and the sink got nothing for 3 s."""
    last_count, quiet_since = sink_count[0], time.time()
    while time.time() < deadline:
        time.sleep(0.5)
        if sink_count[0] != last_count:
            last_count, quiet_since = sink_count[0], time.time()
            continue
        destinations = admin_destinations(admin_base, token)
        if destinations is None:
            return
        busy = any(destination.get("queueDepth") or destination.get("inFlight")
                   for destination in destinations if destination.get("mode") == "active")
        if not busy and time.time() - quiet_since >= 3:
            return


def start_echo(sink):
    """Print the sink's lines on a background thread and count them."""
    def echo():
        for line in sink.stdout:
            sink_count[0] += 1
            say(line.rstrip())
    threading.Thread(target=echo, daemon=True).start()


def terminal_count(address, key, projects):
    total = 0
    for project in projects:
        request = urllib.request.Request(
            f"http://{address}/projects/{project}/portOuts?status=completed,expired,failed&limit=200",
            headers={"Authorization": f"Bearer {key}"})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                total += len(json.load(response)["items"])
        except OSError:
            pass
    return total


def port_in_use(address):
    """Return whether something accepts connections at `address`, a host:port on loopback."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
            return True
    except OSError:
        return False


def wait_ready(url, process, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False


if __name__ == "__main__":
    main()
