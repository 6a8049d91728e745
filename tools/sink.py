#!/usr/bin/env python3
"""A downstream system for trying the relay: receives deliveries, verifies each signature with the
`standardwebhooks` package, prints a line per delivery and can record them as JSONL.

Destination secrets come from the relay's configuration: a request to path P is checked with the secret of the
destination whose URL ends in P. Fault options make it return errors, so retries can be watched.
"""
import argparse
import http.server
import json
import sys
import threading
import urllib.parse

from standardwebhooks import Webhook


def load_secrets(config_path):
    """Map URL path to (destination id, Webhook) for every destination in the relay config."""
    with open(config_path) as handle:
        config = json.load(handle)
    secrets = {}
    for tenant in config.get("tenants", []):
        for destination in tenant.get("destinations", []):
            secret = destination["secret"]
            if not isinstance(secret, str):
                continue
            path = urllib.parse.urlsplit(destination["url"]).path or "/"
            secrets[path] = (destination["id"], Webhook(secret))
    return secrets


class SinkHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "portout-sink"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        server = self.server
        path = urllib.parse.urlsplit(self.path).path
        destination, webhook = server.secrets.get(path, (path, None))
        with server.lock:
            server.requests += 1
            fail = server.requests <= server.fail_first
        if fail:
            self.reply(503, b'{"error":"sink is failing on purpose"}')
            return
        verified = False
        if webhook is not None:
            try:
                webhook.verify(body, {key.lower(): value for key, value in self.headers.items()})
                verified = True
            except Exception:  # Any verification failure is reported, not raised.
                verified = False
        event = json.loads(body)
        # A bare portOut object is its own data and has no event type.
        data = event if event.get("object") == "portOut" else event.get("data", {})
        entry = {
            "destination": destination,
            "webhookId": self.headers.get("webhook-id"),
            "type": event.get("type") or "portOut (bare object)",
            "portOut": data.get("id") if data.get("object") == "portOut" else None,
            "status": data.get("status"),
            "verified": verified,
            "userAgent": self.headers.get("User-Agent"),
        }
        with server.lock:
            if server.record:
                server.record.write(json.dumps(entry) + "\n")
                server.record.flush()
        if not server.quiet:
            mark = "signature ok" if verified else "SIGNATURE INVALID"
            # A credentials event names no port out, only its subscription.
            subject = entry["portOut"] or data.get("subscription") or ""
            line = (f"relay -> {destination:<10} {entry['type']:<36} {subject} "
                    f"{entry['status'] or ''}  {mark}\n")
            # One write per line, so lines from concurrent requests never run together.
            with server.lock:
                sys.stdout.write(line)
                sys.stdout.flush()
        self.reply(204 if verified else 401, b"")

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="the relay's config.json, for destination secrets")
    parser.add_argument("--port", type=int, default=8091, help="port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--record", help="append one JSON line per delivery to this file")
    parser.add_argument("--fail-first", type=int, default=0, help="answer 503 to this many requests first")
    parser.add_argument("--quiet", action="store_true", help="print nothing per delivery")
    arguments = parser.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", arguments.port), SinkHandler)
    server.daemon_threads = True
    server.secrets = load_secrets(arguments.config)
    server.lock = threading.Lock()
    server.requests = 0
    server.fail_first = arguments.fail_first
    server.quiet = arguments.quiet
    server.record = open(arguments.record, "a") if arguments.record else None
    print(f"sink listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
