#!/usr/bin/env python3
"""Post a JSONL feed of carrier events to the relay, each signed with the `standardwebhooks` package.

Each line's event id becomes its `webhook-id`, so a retried event (same id) carries the same message id, as a
carrier's retry would. Prints one line per event unless --quiet, then a JSON summary of the responses.
"""
import argparse
import datetime
import http.client
import json
import sys
import time
import urllib.parse

from standardwebhooks import Webhook


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("feed", help="JSONL file, one event per line")
    parser.add_argument("--url", required=True, help="webhook URL, such as http://127.0.0.1:8080/webhooks/gigs")
    parser.add_argument("--secret", required=True, help="the tenant's whsec_ secret")
    parser.add_argument("--rate", type=float, default=0, help="events per second; 0 sends as fast as possible")
    parser.add_argument("--start", type=int, default=0, help="index of the first line to send")
    parser.add_argument("--count", type=int, default=None, help="number of lines to send")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    arguments = parser.parse_args()

    with open(arguments.feed, "rb") as handle:
        lines = [line.rstrip(b"\n") for line in handle if line.strip()]
    end = len(lines) if arguments.count is None else arguments.start + arguments.count
    webhook = Webhook(arguments.secret)
    url = urllib.parse.urlsplit(arguments.url)
    connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
    summary = {"sent": 0, "accepted": 0, "duplicates": 0, "stale": 0, "rejected": 0, "statusCodes": {}}
    interval = 1 / arguments.rate if arguments.rate > 0 else 0
    for body in lines[arguments.start:end]:
        event = json.loads(body)
        message_id = event.get("id") or "msg_bare"
        now = datetime.datetime.now(tz=datetime.timezone.utc)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": webhook.sign(message_id, now, body),
        }
        status, reply = post(connection, url, body, headers)
        summary["sent"] += 1
        summary["statusCodes"][str(status)] = summary["statusCodes"].get(str(status), 0) + 1
        outcome = "rejected"
        if status in (200, 202):
            receipt = json.loads(reply)
            outcome = "duplicate" if receipt["duplicate"] else ("stale" if receipt["stale"] else "accepted")
            summary["duplicates" if receipt["duplicate"] else "accepted"] += 1
            if receipt["stale"] and not receipt["duplicate"]:
                summary["stale"] += 1
        else:
            summary["rejected"] += 1
        if not arguments.quiet:
            data = event.get("data", {})
            print(f"carrier -> relay  {status} {outcome:<9} {event.get('type', ''):<36} "
                  f"{data.get('id') or data.get('subscription', '')} {data.get('status', '')}", flush=True)
        if interval:
            time.sleep(interval)
    print(json.dumps(summary), flush=True)
    return 0 if summary["rejected"] == 0 else 1


def post(connection, url, body, headers):
    """Send one POST on the keep-alive connection, reconnecting once if the server closed it."""
    for attempt in range(2):
        try:
            connection.request("POST", url.path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except (ConnectionError, http.client.HTTPException):
            connection.close()
            if attempt == 1:
                raise
    raise AssertionError("unreachable")


if __name__ == "__main__":
    sys.exit(main())
