#!/usr/bin/env python3
"""`make run`: start a signature-checking sink and the relay on config.json, feed the relay the signed fixture
feed, print what happened, and keep both running until Ctrl-C.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEED = os.path.join(ROOT, "Tests", "PortoutRelayTests", "Data", "carrier-feed.jsonl")
LOG = os.path.join(ROOT, "portout-relay.log")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--binary", required=True, help="the built portout-relay executable")
    parser.add_argument("--config", required=True, help="relay configuration")
    parser.add_argument("--rate", type=float, default=60, help="events per second sent to the relay")
    arguments = parser.parse_args()

    config_path = os.path.abspath(arguments.config)
    with open(config_path) as handle:
        config = json.load(handle)
    listen = config.get("listen", "127.0.0.1:8080")
    tenant = config["tenants"][0]
    secret = tenant["verify"]["secrets"][0]
    if not isinstance(secret, str):
        sys.exit("make run signs the feed with the first tenant's first secret, which must be inline in config.json")
    data_dir = os.path.join(os.path.dirname(config_path), config.get("dataDir", "data"))
    journal_existed = os.path.isdir(os.path.join(data_dir, "journal"))

    processes = []
    def stop(*_):
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        sys.exit(0)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    sink = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tools", "sink.py"), "--config", config_path, "--port", "8091"],
        stdout=subprocess.PIPE, text=True)
    processes.append(sink)
    first_line = sink.stdout.readline().strip()
    if not first_line.startswith("sink listening"):
        stop()
    say(f"== {first_line} (verifies each delivery's signature with the standardwebhooks package)")

    log = open(LOG, "ab")
    relay = subprocess.Popen([arguments.binary, "serve", "--config", config_path], stderr=log)
    processes.append(relay)
    base = f"http://{listen}"
    if not wait_ready(base + "/readyz", relay):
        print(f"the relay did not start; see {LOG}", file=sys.stderr)
        stop()
    say(f"== relay listening on {base}, journal in {data_dir}, log lines in {LOG}")
    if journal_existed:
        say("== the journal already holds events from an earlier run, so this feed is answered as duplicates;"
            f" remove {data_dir} to start over")

    say(f"== feeding {FEED} ({sum(1 for _ in open(FEED))} events with retries, resends and reordering)")
    # The feed's lines and the sink's lines are printed as they arrive, one whole line at a time.
    start_echo(sink)
    feed = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tools", "feed.py"), FEED, "--url", f"{base}/webhooks/{tenant['id']}",
         "--secret", secret, "--rate", str(arguments.rate)],
        stdout=subprocess.PIPE, text=True)
    last_line = ""
    for line in feed.stdout:
        last_line = line.strip()
        if not last_line.startswith("{"):
            say(last_line)
    feed.wait()
    summary = json.loads(last_line)
    time.sleep(2)
    say("")
    say("== carrier -> relay: {sent} sent, {accepted} accepted (of which {stale} stale, journaled but not "
        "forwarded), {duplicates} duplicates answered 200, {rejected} rejected".format(**summary))
    say(f"== relay -> sink: {sink_count[0]} deliveries so far, each signature checked by the sink")
    say("")
    say("Next:")
    say(f"  {arguments.binary} journal stats --data-dir {data_dir}")
    say(f"  {arguments.binary} journal dump --data-dir {data_dir} | head")
    say(f"  curl -s {base}/readyz")
    if tenant.get("apiKeys") and isinstance(tenant["apiKeys"][0], str):
        project = tenant["projects"][0]
        say(f"  curl -s -H 'Authorization: Bearer {tenant['apiKeys'][0]}' "
            f"'{base}/projects/{project}/portOuts?status=completed&limit=3'")
    say(f"  tail -f {LOG}")
    say("The relay and the sink keep running and further deliveries are printed here; press Ctrl-C to stop both.")
    while relay.poll() is None:
        time.sleep(1)
    stop()


sink_count = [0]
print_lock = threading.Lock()


def say(line):
    """Print one whole line; the sink's lines come from another thread."""
    with print_lock:
        print(line, flush=True)


def start_echo(sink):
    """Print the sink's lines on a background thread and count them."""
    def echo():
        for line in sink.stdout:
            sink_count[0] += 1
            say(line.rstrip())
    threading.Thread(target=echo, daemon=True).start()


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
