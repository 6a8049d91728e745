"""Memory and start-up: RSS idle, with port outs in state and with 1,000,000 dedupe keys, and the time to start
on a 1,000,000-record journal, with every delivery settled and with every one pending."""
import shutil
import statistics
import time

from report import row
from servers import RELAY_PORT, rss_mib, start_relay, stop, wait_ready


def memory_and_startup(context):
    idle = start_relay(context.relay_binary, context.work, "idle")
    time.sleep(1)
    idle_rss = rss_mib(idle.pid)
    stop(idle)

    port_outs = context.arguments.state_port_outs
    data = context.journal("state", port_outs)
    state = start_relay(context.relay_binary, context.work, "state", data=data)
    time.sleep(1)
    state_rss = rss_mib(state.pid)
    stop(state)
    shutil.rmtree(data, ignore_errors=True)
    per_port_out = (state_rss - idle_rss) * 1024 * 1024 / port_outs

    # A realistic journal: each port out has four statuses, so 1,000,000 records hold 1,000,000 dedupe keys
    # and 250,000 port outs. The worst case, one record per port out, is measured too.
    records = context.arguments.replay_records
    data = context.journal("replay", records, "--statuses-per-port-out", "4")
    startups, loaded_rss = measure_startups(context, data)
    shutil.rmtree(data, ignore_errors=True)
    data = context.journal("replay", records)
    worst_startups, worst_rss = measure_startups(context, data)
    shutil.rmtree(data, ignore_errors=True)
    # A relay restarted after its destination was down for the whole journal, so every event waits to be sent.
    # No sink listens, so each start journals a few failed attempts before it is stopped, which the next reads.
    data = context.journal("replay", records, "--destinations", "sink0")
    pending_startups, pending_rss = measure_startups(context, data, destinations=["sink0"])
    shutil.rmtree(data, ignore_errors=True)
    startup, worst_startup = statistics.median(startups), statistics.median(worst_startups)
    return [
        row("RSS idle", idle_rss, None, "MiB", None, target="<= 64 MiB", ok=idle_rss <= 64),
        row(f"RSS with {port_outs:,} port outs in state", state_rss, None, "MiB", None),
        row("memory per accepted port out", per_port_out, None, "bytes", None),
        row(f"RSS with {records:,} dedupe keys", loaded_rss, None, "MiB", None, target="<= 300 MiB",
            ok=loaded_rss <= 300),
        row(f"start-up on a {records:,}-record journal", startup, None, "s", None, target="<= 3 s", ok=startup <= 3,
            runs={"relay": startups}),
        row("RSS, one record per port out (worst case)", worst_rss, None, "MiB", None),
        row("start-up, one record per port out (worst case)", worst_startup, None, "s", None,
            runs={"relay": worst_startups}),
        row(f"start-up with {records:,} deliveries pending", statistics.median(pending_startups), None, "s", None,
            runs={"relay": pending_startups}),
        row(f"RSS with {records:,} deliveries pending", pending_rss, None, "MiB", None),
    ]


def measure_startups(context, data, destinations=()):
    """Return the seconds to start in each of STARTUP_RUNS starts on the journal in `data`, and the largest RSS
    of those starts once ready.

    A start has no reference to run beside it, and on this machine the same binary took from 1.9 to 3.3 s on
    one journal within a few minutes, so the figure is the median of several starts.
    """
    seconds, rss = [], []
    for _ in range(STARTUP_RUNS):
        startup, ready_rss = measure_startup(context, data, destinations)
        seconds.append(startup)
        rss.append(ready_rss)
    return seconds, max(rss)


STARTUP_RUNS = 3


def measure_startup(context, data, destinations=()):
    """Return the seconds from process start until /readyz responds, and the RSS then."""
    started = time.time()
    relay = start_relay(context.relay_binary, context.work, "replay", data=data, wait=False,
                        destinations=destinations)
    try:
        wait_ready(RELAY_PORT, relay, timeout=120)
        startup = time.time() - started
        rss = rss_mib(relay.pid)
    finally:
        stop(relay)
    return startup, rss
