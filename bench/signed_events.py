#!/usr/bin/env python3
"""Write N unique carrier events, each pre-signed two ways, one per line for the load generators.

Each line has six tab-separated columns. The first is the body. Then come the Standard Webhooks `webhook-id`,
`webhook-timestamp` and `webhook-signature` headers, which the relay verifies. The fifth is an
`X-Hub-Signature-256` header: `sha256=` and the lower-case hex HMAC-SHA256 of the body alone under the same
key, which is the only HMAC form that Debian's `webhook` 2.8 can check. The last is the request path,
`/webhooks/TENANT`. bench/signed-events.lua (wrk) and `portout-bench load` both read this format.

Signed with Python's hmac module, which computes the same HMAC-SHA256 as the `standardwebhooks` package, because
that package takes about ten times longer per event. Importable, so that bench/run.py can call write_events.
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


def tenant_ids(count):
    """Return the ids of `count` benchmark tenants: `bench` alone, or `bench-0000`, `bench-0001`, ..."""
    if count == 1:
        return ["bench"]
    return [f"bench-{index:04d}" for index in range(count)]


def tenant_secret(tenant_id, default_secret):
    """Return the tenant's whsec_ secret: `default_secret` for `bench`, otherwise one derived from the id."""
    if tenant_id == "bench":
        return default_secret
    return "whsec_" + base64.b64encode(f"{tenant_id}-inbound-secret".encode()).decode()


def write_events(path, count, default_secret, tenants=1, project="acme-mobile", prefix="b"):
    """Write `count` events spread round-robin over `tenants` tenants, each signed with its tenant's secret.

    `prefix` goes into every port-out and event id, so that separate files never share an id.
    """
    ids = tenant_ids(tenants)
    keys = [base64.b64decode(tenant_secret(tenant, default_secret).removeprefix("whsec_")) for tenant in ids]
    timestamp = str(int(time.time()))
    with open(path, "w") as output:
        for index in range(count):
            tenant = index % tenants
            body, event_id = event_body(index, project, prefix)
            signed = f"{event_id}.{timestamp}.{body}".encode()
            signature = base64.b64encode(hmac.new(keys[tenant], signed, hashlib.sha256).digest()).decode()
            body_mac = hmac.new(keys[tenant], body.encode(), hashlib.sha256).hexdigest()
            output.write(f"{body}\t{event_id}\t{timestamp}\tv1,{signature}\tsha256={body_mac}"
                         f"\t/webhooks/{ids[tenant]}\n")


def event_body(index, project, prefix):
    """Return the compact JSON body and the event id of event `index`."""
    status = STATUSES[index % 4]
    port_out = f"pout_{prefix}{index:012d}"
    event_id = f"evt_{prefix}{index:014d}"
    event = {
        "object": "event", "id": event_id, "type": TYPES.get(status, f"com.gigs.portOut.{status}"),
        "datacontenttype": "application/json", "project": project,
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
    return json.dumps(event, separators=(",", ":")), event_id


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--secret", required=True, help="whsec_ secret of the tenant `bench`")
    parser.add_argument("--tenants", type=int, default=1, help="tenants to spread the events over (default 1)")
    parser.add_argument("--project", default="acme-mobile")
    parser.add_argument("--out", required=True)
    parser.add_argument("--prefix", default="b", help="port-out id prefix, to keep separate runs unique")
    arguments = parser.parse_args()
    write_events(arguments.out, arguments.count, arguments.secret, arguments.tenants, arguments.project,
                 arguments.prefix)


if __name__ == "__main__":
    main()
