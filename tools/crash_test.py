#!/usr/bin/env python3
"""Crash rounds: feed signed events to the relay under load, kill it with SIGKILL and restart it, 20 times by
default. Then check what reached a sink.

The rounds take turns killing the relay while its journal writer is inside fdatasync (a group commit, found in
/proc), right after it logs that it started a new journal segment (segments are 64 KiB here, so rotations are
frequent), and at a random moment. After each kill the journal is read offline with `portout-relay journal
dump`: a delivery the sink has received but the journal does not show as settled was in flight at the kill.

The run passes only if every event that got a 2xx reached the sink and each port out's statuses first reached
the sink in lifecycle order. Every duplicate at the sink must also be a delivery that was in flight at a kill,
at most once per kill it was in flight at. No kill may leave more deliveries unsettled than the attempts under
way plus the outcomes the relay holds for its next journal batch and those its journal writer has not yet written.

Everything listens on 127.0.0.1; the run is bounded by --rounds and by a timeout per phase.
"""
import argparse
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

RELAY_PORT = 18310
SINK_PORT = 18311
SECRET = "whsec_Y3Jhc2gtdGVzdC1pbmJvdW5kLXNlY3JldA=="
OUTBOUND_SECRET = "whsec_Y3Jhc2gtdGVzdC1vdXRib3VuZC1zZWNyZXQ="
STATUSES = ["initiated", "processing", "issued", "completed"]
CONCURRENCY = 8
# DeliveryEngine.outcomeBatchRecords: outcomes are journaled in batches of up to this many, and one pass may add
# as many as CONCURRENCY to a batch that is one short of full.
OUTCOME_BATCH = 16
# In flight, held for the next batch, and handed to the journal writer but not yet written.
UNSETTLED_LIMIT = CONCURRENCY + 2 * (OUTCOME_BATCH + CONCURRENCY)
SENDERS = 6
# fdatasync's system call number, as /proc/PID/task/TID/syscall shows it while a thread is inside it.
FDATASYNC = {"x86_64": 75, "aarch64": 83}.get(platform.machine())


class Sink(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", SINK_PORT), SinkHandler)
        self.lock = threading.Lock()
        self.arrivals = []
        # Requests being handled now, since a killed relay's last requests may still be in progress.
        self.active = 0
        # Kills so far, recorded with each arrival so that a failure report shows between which kills copies came.
        self.kills = 0

    def handle_error(self, request, client_address):
        # A killed relay resets its connections; that is the point of the test, not an error to print.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class SinkHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        with self.server.lock:
            self.server.active += 1
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            data = json.loads(body).get("data", {})
            with self.server.lock:
                self.server.arrivals.append(
                    (self.headers.get("webhook-id"), data.get("id"), data.get("status"), self.server.kills))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
        finally:
            with self.server.lock:
                self.server.active -= 1

    def log_message(self, *arguments):
        pass


def signed_request(port_out, status, key):
    event_id = f"evt_{port_out}_{status}"
    event = {
        "object": "event", "id": event_id,
        "type": "com.gigs.portOut.created" if status == "initiated" else f"com.gigs.portOut.{status}",
        "datacontenttype": "application/json", "project": "acme-mobile", "source": "https://api.gigs.com",
        "specversion": "1.0", "time": "2026-11-02T09:38:11Z", "version": "2024-12-20",
        "data": {
            "object": "portOut", "id": port_out, "behavior": "portOut",
            "completedAt": "2026-11-02T12:00:00Z" if status == "completed" else None,
            "createdAt": "2026-11-02T08:47:00Z", "expiredAt": None, "failureReason": None, "status": status,
            "subscription": "sub_crash", "user": "usr_crash",
        },
    }
    body = json.dumps(event, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    signature = base64.b64encode(hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    headers = {
        "Content-Type": "application/json", "webhook-id": event_id, "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + signature.decode(),
    }
    return event_id, body, headers


class Load:
    """Senders that post each port out's statuses in order, one at a time, and remember what got a 2xx."""

    def __init__(self):
        self.key = base64.b64decode(SECRET.removeprefix("whsec_"))
        self.lock = threading.Lock()
        self.acknowledged = set()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.send, args=(index,), daemon=True) for index in range(SENDERS)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def send(self, sender):
        number = 0
        while not self.stopping.is_set():
            port_out = f"pout_crash_{sender}_{number}"
            number += 1
            for status in STATUSES:
                event_id, body, headers = signed_request(port_out, status, self.key)
                # The same event is sent until it is acknowledged, as a carrier retries; a relay being killed
                # and restarted refuses or resets connections meanwhile.
                while not self.stopping.is_set():
                    try:
                        connection = http.client.HTTPConnection("127.0.0.1", RELAY_PORT, timeout=5)
                        connection.request("POST", "/webhooks/crash", body=body, headers=headers)
                        status_code = connection.getresponse().status
                        connection.close()
                    except OSError:
                        time.sleep(0.02)
                        continue
                    if 200 <= status_code < 300:
                        with self.lock:
                            self.acknowledged.add(event_id)
                        break
                    time.sleep(0.02)


def write_config(work):
    config = {
        "listen": f"127.0.0.1:{RELAY_PORT}", "dataDir": os.path.join(work, "data"), "logLevel": "info",
        "eventLoops": 2, "admin": {"listen": "127.0.0.1:0"}, "journal": {"segmentBytes": 65536},
        "tenants": [{
            "id": "crash", "projects": ["acme-mobile"], "verify": {"secrets": [SECRET]},
            "destinations": [{
                "id": "sink", "url": f"http://127.0.0.1:{SINK_PORT}/sink", "secret": OUTBOUND_SECRET,
                "concurrency": CONCURRENCY, "retrySchedule": [0.2], "jitter": 0, "maxAttempts": 1000,
            }],
        }],
    }
    path = os.path.join(work, "config.json")
    with open(path, "w") as handle:
        json.dump(config, handle)
    return path


def start_relay(binary, config, log_path):
    log = open(log_path, "ab")
    process = subprocess.Popen([binary, "serve", "--config", config], stderr=log)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", RELAY_PORT, timeout=1)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit(f"the relay did not start; see {log_path}")


def wait_for_rotation(log_path, after_offset, timeout):
    """Waits until the log shows a new segment after `after_offset`; returns whether it did."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(log_path, "rb") as handle:
            handle.seek(after_offset)
            if b'"journal segment started"' in handle.read():
                return True
        time.sleep(0.005)
    return False


def check(load, sink, in_flight_by_round):
    with sink.lock:
        arrivals = list(sink.arrivals)
    received = [arrival[0] for arrival in arrivals]
    missing = load.acknowledged - set(received)
    copies = {}
    for event_id in received:
        copies[event_id] = copies.get(event_id, 0) + 1
    duplicates = len(received) - len(copies)
    # A delivery in flight at a kill may reach the sink once more after the restart; nothing else may.
    kills_in_flight = {}
    for in_flight in in_flight_by_round:
        for event_id in in_flight:
            kills_in_flight[event_id] = kills_in_flight.get(event_id, 0) + 1
    unexplained = sorted(
        event_id for event_id, count in copies.items() if count - 1 > kills_in_flight.get(event_id, 0))
    # A relay that failed to journal outcomes would leave far more unsettled than UNSETTLED_LIMIT.
    too_many_in_flight = [
        (round_number, len(in_flight)) for round_number, in_flight in enumerate(in_flight_by_round, start=1)
        if len(in_flight) > UNSETTLED_LIMIT]
    first_order = {}
    seen = set()
    for event_id, port_out, status, _ in arrivals:
        if event_id not in seen:
            seen.add(event_id)
            first_order.setdefault(port_out, []).append(STATUSES.index(status))
    out_of_order = [port_out for port_out, ranks in first_order.items() if ranks != sorted(ranks)]
    print(json.dumps({
        "rounds": len(in_flight_by_round), "acknowledged": len(load.acknowledged), "received": len(received),
        "missing": len(missing), "inFlightAtKills": sum(len(in_flight) for in_flight in in_flight_by_round),
        "duplicates": duplicates, "duplicatesNotInFlight": len(unexplained),
        "portOutsOutOfOrder": len(out_of_order),
    }))
    failures = []
    if missing:
        failures.append(f"{len(missing)} acknowledged events never reached the sink, such as {sorted(missing)[:3]}")
    if out_of_order:
        failures.append(f"{len(out_of_order)} port outs reached the sink out of order, such as {out_of_order[:3]}")
    if too_many_in_flight:
        failures.append(
            f"kills left more deliveries unsettled than {UNSETTLED_LIMIT} (in flight, held for a batch, or being "
            f"written) can explain: "
            f"(round, count) {too_many_in_flight[:3]}")
    if unexplained:
        failures.append(
            f"{len(unexplained)} events reached the sink more often than kills caught them in flight, such as "
            f"{unexplained[:3]}")
        for event_id in unexplained[:3]:
            kills = [arrival[3] for arrival in arrivals if arrival[0] == event_id]
            rounds = [number for number, in_flight in enumerate(in_flight_by_round, start=1) if event_id in in_flight]
            failures.append(f"{event_id} arrived after kills {kills}; in flight at the kills of rounds {rounds}")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--binary", required=True, help="build of portout-relay")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    arguments = parser.parse_args()
    random.seed(arguments.seed)

    work = tempfile.mkdtemp(prefix="portout-crash-")
    config = write_config(work)
    log_path = os.path.join(work, "relay.log")
    sink = Sink()
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    load = Load()
    print(f"crash test: {arguments.rounds} rounds, seed {arguments.seed}, work in {work}", flush=True)

    try:
        relay = start_relay(arguments.binary, config, log_path)
        load.start()
        relay, in_flight_by_round = run_rounds(arguments, relay, config, log_path, load, sink)
        load.stop()
        wait_for_deliveries(load, sink)
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=30)
        failures = check(load, sink, in_flight_by_round)
    finally:
        load.stopping.set()
        sink.shutdown()

    if failures:
        for failure in failures:
            print(f"FAIL: {failure}")
        print(f"relay log kept in {log_path}")
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)
    print("PASS")


def run_rounds(arguments, relay, config, log_path, load, sink):
    """Kills and restarts the relay once a round. Returns the relay left running, and a list with, for each
    round, the events whose delivery was in flight at its kill."""
    in_flight_by_round = []
    for round_number in range(1, arguments.rounds + 1):
        # Some load first, so that each kill finds deliveries queued and in flight.
        time.sleep(random.uniform(0.2, 1.5))
        offset = os.path.getsize(log_path)
        if round_number % 3 == 1:
            moment = "inside a group commit's fdatasync"
            if not wait_for_group_commit(relay.pid, timeout=10):
                moment = "at a random moment (no fdatasync seen within 10 s)"
        elif round_number % 3 == 2:
            moment = "after a segment rotation"
            if not wait_for_rotation(log_path, offset, timeout=10):
                moment = "at a random moment (no rotation within 10 s)"
        else:
            moment = "at a random moment"
        relay.send_signal(signal.SIGKILL)
        relay.wait()
        in_flight = deliveries_in_flight(arguments.binary, config, sink)
        in_flight_by_round.append(in_flight)
        with load.lock:
            acknowledged = len(load.acknowledged)
        print(
            f"round {round_number}: killed {moment}; deliveries in flight: {len(in_flight)}; "
            f"{acknowledged} events acknowledged so far", flush=True)
        relay = start_relay(arguments.binary, config, log_path)
    return relay, in_flight_by_round


def wait_for_group_commit(pid, timeout):
    """Waits until the relay's journal writer is inside fdatasync; returns whether it was seen there."""
    if FDATASYNC is None:
        return False
    writer = None
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/comm") as handle:
            if handle.read().strip() == "journal-writer":
                writer = f"/proc/{pid}/task/{task}/syscall"
    if writer is None:
        sys.exit("the relay has no thread named journal-writer")
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(writer) as handle:
            if handle.read().split(" ", 1)[0] == str(FDATASYNC):
                return True
    return False


def deliveries_in_flight(binary, config, sink):
    """Returns the events the sink has received whose delivery the killed relay's journal does not show as
    settled: those it may send again after the restart."""
    # Requests the relay wrote just before it died may still be in the sink's socket buffers, not yet parsed, so
    # the sink must be idle with no new arrival for a while, not only idle once.
    deadline = time.time() + 10
    quiet_checks = 0
    last_count = -1
    while quiet_checks < 5:
        if time.time() > deadline:
            sys.exit("the sink was still receiving requests 10 s after the relay was killed")
        time.sleep(0.05)
        with sink.lock:
            count = len(sink.arrivals)
            quiet_checks = quiet_checks + 1 if sink.active == 0 and count == last_count else 0
            last_count = count
    with sink.lock:
        received = {arrival[0] for arrival in sink.arrivals}
        sink.kills += 1
    dump = subprocess.run(
        [binary, "journal", "dump", "--config", config], capture_output=True, text=True, timeout=120, check=True)
    events = {}
    settled = set()
    for line in dump.stdout.splitlines():
        record = json.loads(line)
        if record["record"] == "event":
            events[record["sequence"]] = record["event"]
        elif record["record"] == "attempt" and record["outcome"] in ("delivered", "deadLettered"):
            settled.add(record["sequence"])
    return {event_id for sequence, event_id in events.items() if sequence not in settled} & received


def wait_for_deliveries(load, sink):
    """Waits up to two minutes for every acknowledged event to reach the sink, and a second more for copies."""
    with load.lock:
        expected = set(load.acknowledged)
    deadline = time.time() + 120
    while time.time() < deadline:
        with sink.lock:
            if expected <= {arrival[0] for arrival in sink.arrivals}:
                break
        time.sleep(0.2)
    time.sleep(1)


if __name__ == "__main__":
    main()
