"""Run the load generators and return their figures: wrk (closed loop) and `portout-bench load` (open loop)."""
import json
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def wrk_events(port, events, duration, connections=32, path=None):
    """Post the pre-signed events of `events` with wrk over `connections` keep-alive connections.

    Each event goes to its own path column unless `path` is given. Return wrk's figures with `rate` added.
    wrk waits for each response before sending the next request on that connection, so its latencies do not
    include the time a request would have waited to be sent.
    """
    threads = min(2, connections)
    script_arguments = [events, str(threads)] + ([path] if path else [])
    return run_wrk(["-t", str(threads), "-c", str(connections), f"-d{duration}s", "--timeout", "5s",
                    "-s", os.path.join(HERE, "signed-events.lua"), f"http://127.0.0.1:{port}", "--"]
                   + script_arguments)


def wrk_body(url, body_file, duration, connections):
    """Post the contents of `body_file` to `url` on every request."""
    return run_wrk(["-t2", f"-c{connections}", f"-d{duration}s", "-s", os.path.join(HERE, "post-body.lua"), url,
                    "--", body_file])


def wrk_read(port, duration, path, script_arguments):
    """GET `path` with the read API's bearer key, or random port outs when a count is among the arguments."""
    return run_wrk(["-t2", "-c32", f"-d{duration}s", "-s", os.path.join(HERE, "read-api.lua"),
                    f"http://127.0.0.1:{port}{path}", "--"] + script_arguments)


def run_wrk(arguments):
    output = subprocess.run(["wrk"] + arguments, check=True, capture_output=True, text=True).stdout
    figures = json.loads(output.strip().splitlines()[-1])
    figures["rate"] = figures["requests"] / (figures["durationUs"] / 1e6)
    return figures


def open_loop(bench_binary, port, events, rate, duration, connections, warmup=1, path=None):
    """Send `rate` requests a second with `portout-bench load` and return its figures.

    Latency runs from each request's scheduled send time, so queueing behind a slow response is counted.
    """
    command = [bench_binary, "load", "--url", f"http://127.0.0.1:{port}", "--events", events, "--rate", str(rate),
               "--duration", str(duration), "--warmup", str(warmup), "--connections", str(connections)]
    if path:
        command += ["--path", path]
    # Bounded by the schedule plus the generator's own 5 s response timeout, with a margin.
    output = subprocess.run(command, check=True, capture_output=True, text=True,
                            timeout=warmup + duration + 60).stdout
    return json.loads(output.strip().splitlines()[-1])


def sync_probe(bench_binary, directory, writes, busy_threads):
    """Time fdatasync after `writes` small appends in `directory` with `portout-bench sync` and return its figures."""
    command = [bench_binary, "sync", "--dir", directory, "--writes", str(writes), "--busy-threads", str(busy_threads)]
    # A sync took about 0.1 ms on the development machine. The limit leaves room for a disk a hundred times slower.
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=writes / 100 + 60).stdout
    return json.loads(output.strip().splitlines()[-1])
