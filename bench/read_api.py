"""Read API: retrieve and list over 100,000 port outs, beside nginx returning fixed bodies."""
import shutil

from loads import wrk_read
from report import row
from servers import NGINX_PORT, RELAY_PORT, start_nginx, start_relay, stop

READ_KEY = "bench-read-key-0123456789"
PORT_OUT_JSON = ('{"object":"portOut","id":"pout_s000000000000","behavior":"portOut","completedAt":null,'
                 '"createdAt":"2026-11-02T08:47:00Z","expiredAt":null,"failureReason":null,"status":"initiated",'
                 '"subscription":"sub_0SNTORy8HZRd6PFFxSbd414RhJyC","user":"usr_0SNtWG5jUMVDc8uEia875rjmL6KG"}')
LIST_PATH = "/projects/acme-mobile/portOuts?limit=10"


def read_api(context):
    count = context.arguments.read_port_outs
    duration = context.duration
    retrieve_arguments = [READ_KEY, "acme-mobile", str(count)]

    data = context.journal("read", count)
    relay = start_relay(context.relay_binary, context.work, "read", data=data, api_keys=[READ_KEY])
    try:
        retrieve = wrk_read(RELAY_PORT, duration, "/", retrieve_arguments)
        listing = wrk_read(RELAY_PORT, duration, LIST_PATH, [READ_KEY, "acme-mobile"])
    finally:
        stop(relay)
        shutil.rmtree(data, ignore_errors=True)

    item_list = ('{"object":"list","items":[' + ",".join([PORT_OUT_JSON] * 10)
                 + '],"moreItemsAfter":"x","moreItemsBefore":null}')
    nginx = start_nginx(context.work, NGINX_PORT, "return 200 '" + PORT_OUT_JSON + "';")
    try:
        reference_retrieve = wrk_read(NGINX_PORT, duration, "/", retrieve_arguments)
    finally:
        stop(nginx)
    nginx = start_nginx(context.work, NGINX_PORT, "return 200 '" + item_list + "';")
    try:
        reference_list = wrk_read(NGINX_PORT, duration, LIST_PATH, [READ_KEY, "acme-mobile"])
    finally:
        stop(nginx)

    if retrieve["non2xx"] or listing["non2xx"]:
        raise RuntimeError(f"the read API returned {retrieve['non2xx']} non-2xx statuses to retrieve requests "
                           f"and {listing['non2xx']} to list requests")
    return [
        row(f"read API retrieve, {count:,} port outs", retrieve["rate"], reference_retrieve["rate"], "req/s",
            "nginx fixed port out", target=">= 0.3x", ok=retrieve["rate"] >= 0.3 * reference_retrieve["rate"]),
        row("read API list, limit 10", listing["rate"], reference_list["rate"], "req/s", "nginx fixed list",
            target=">= 0.3x", ok=listing["rate"] >= 0.3 * reference_list["rate"]),
    ]
