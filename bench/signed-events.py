#!/usr/bin/env python3
"""Write N unique carrier events, each pre-signed with Standard Webhooks headers, one per line for wrk's Lua
script: body, webhook-id, webhook-timestamp and webhook-signature separated by tabs.

Signed with Python's hmac module, which computes the same HMAC-SHA256 as the `standardwebhooks` package, because
that package takes about ten times longer per event.
"""
import argparse
import base64
import hashlib
import hmac
import json
import time

# Every event is its own port out, so the load is all new, non-stale events.
STATUSES = ["initiated", "processing", "issued", "completed"]
TYPES = {"initiated": "com.gigs.portOut.created"}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--secret", required=True, help="whsec_ secret of the tenant")
    parser.add_argument("--project", default="acme-mobile")
    parser.add_argument("--out", required=True)
    parser.add_argument("--prefix", default="b", help="port-out id prefix, to keep separate runs unique")
    arguments = parser.parse_args()
    key = base64.b64decode(arguments.secret.removeprefix("whsec_"))
    timestamp = str(int(time.time()))
    with open(arguments.out, "w") as output:
        for index in range(arguments.count):
            status = STATUSES[index % 4]
            port_out = f"pout_{arguments.prefix}{index:012d}"
            event_id = f"evt_{arguments.prefix}{index:014d}"
            event = {
                "object": "event", "id": event_id, "type": TYPES.get(status, f"com.gigs.portOut.{status}"),
                "datacontenttype": "application/json", "project": arguments.project,
                "source": "https://api.gigs.com", "specversion": "1.0", "time": "2026-11-02T09:38:11Z",
                "version": "2024-12-20",
                "data": {
                    "object": "portOut", "id": port_out, "behavior": "portOut",
                    "completedAt": "2026-11-02T12:00:00Z" if status == "completed" else None,
                    "createdAt": "2026-11-02T08:47:00Z", "expiredAt": None, "failureReason": None,
                    "status": status, "subscription": "sub_0SNTORy8HZRd6PFFxSbd414RhJyC",
                    "user": "usr_0SNtWG5jUMVDc8uEia875rjmL6KG",
                },
            }
            body = json.dumps(event, separators=(",", ":"))
            signed = f"{event_id}.{timestamp}.{body}".encode()
            signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
            output.write(f"{body}\t{event_id}\t{timestamp}\tv1,{signature}\n")


if __name__ == "__main__":
    main()
