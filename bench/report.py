"""Print the benchmark table, describe the machine, and write results.md with the sweep plot."""
import os
import platform
import shutil
import subprocess


def row(name, value, reference, unit, reference_name, target=None, ok=None, runs=None):
    """Return a table row: the relay's figure beside its reference from the same run, with a target if set.

    `runs`, for a figure that is a mean over several runs, contains each run's figure as
    `{"relay": [...], "reference": [...]}`, and the results page lists them. A figure without a reference that is
    the median of several runs has `{"relay": [...]}` alone.
    """
    return {"name": name, "value": value, "reference": reference, "unit": unit, "referenceName": reference_name,
            "target": target, "ok": ok, "runs": runs}


def ratio_text(result):
    """Return relay / reference, or nothing for counts of requests, whose ratio means nothing."""
    reference = result["reference"]
    if not reference or result["unit"] == "requests":
        return ""
    return f"{result['value'] / reference:.2f}x"


def verdict_text(result):
    if result["ok"] is None:
        return ""
    return "ok" if result["ok"] else "MISS"


def format_value(value, unit):
    if value is None:
        return ""
    if unit == "requests" and value == 1:
        return "1 request"
    if unit in ("req/s", "bytes", "requests"):
        return f"{value:,.0f} {unit}"
    return f"{value:.2f} {unit}"


DISK_SYNC_CONDITIONS = (("idle", "no busy thread"), ("oneCPUBusy", "one busy thread"))


def disk_sync_rows(disk_sync):
    """Return a row of text cells for each condition of the sync probe."""
    rows = []
    for key, label in DISK_SYNC_CONDITIONS:
        figures = disk_sync[key]
        share = 100 * figures["over5msTotalUs"] / figures["durationUs"]
        rows.append([label] + [f"{figures[name] / 1000:.2f}" for name in ("p50Us", "p99Us", "p999Us", "maxUs")]
                    + [f"{figures['over5ms']:,}", f"{share:.1f}%"])
    return rows


DISK_SYNC_HEADER = ["condition", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "syncs over 5 ms", "time in them"]


def print_disk_sync(disk_sync):
    if not disk_sync:
        return
    writes = disk_sync["idle"]["writes"]
    print(f"\nfdatasync after each of {writes:,} appends of 2,048 bytes, without the relay:")
    for cells in [DISK_SYNC_HEADER] + disk_sync_rows(disk_sync):
        print(f"{cells[0]:<16}" + "".join(f"{cell:>16}" for cell in cells[1:]))


def print_table(results):
    width = max([52] + [len(result["name"]) for result in results])
    print(f"\n{'measure':<{width}} {'relay':>13} {'reference':>13} {'ratio':>7}  {'target':<10} {'':<4} reference is")
    for result in results:
        print(f"{result['name']:<{width}} {format_value(result['value'], result['unit']):>13} "
              f"{format_value(result['reference'], result['unit']):>13} {ratio_text(result):>7}  "
              f"{result['target'] or '':<10} {verdict_text(result):<4} {result['referenceName'] or ''}")


def runs_text(result):
    """Return each run's figure of a row made of several runs, relay runs first, as `relay 9,100 and 9,700; ...`."""
    runs = result["runs"]
    relay = listed([format_value(value, result["unit"]) for value in runs["relay"]])
    if "reference" not in runs:
        return f"relay {relay}"
    reference = listed([format_value(value, result["unit"]) for value in runs["reference"]])
    return f"relay {relay}; {result['referenceName']} {reference}"


def listed(items):
    """Return `a`, `a and b`, or `a, b and c`."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def print_runs(results):
    averaged = [result for result in results if result.get("runs")]
    if averaged:
        print("\nthe runs behind each figure that is a mean or a median, in the order they went:")
    for result in averaged:
        print(f"{result['name']}: {runs_text(result)}")


def print_sweep(sweep):
    if not sweep:
        return
    print("\noffered connections: relay ingest beside nginx's fixed 202, wrk for each point")
    print(f"{'conns':>5} {'relay req/s':>12} {'p50':>8} {'p99':>8} {'p99.9':>8}   "
          f"{'nginx req/s':>12} {'p50':>8} {'p99':>8} {'p99.9':>8} {'ratio':>6}")
    for point in sweep:
        relay, nginx = point["relay"], point["nginx"]
        print(f"{point['connections']:>5} {relay['rate']:>12,.0f} {relay['p50Us'] / 1000:>8.2f} "
              f"{relay['p99Us'] / 1000:>8.2f} {relay['p999Us'] / 1000:>8.2f}   {nginx['rate']:>12,.0f} "
              f"{nginx['p50Us'] / 1000:>8.2f} {nginx['p99Us'] / 1000:>8.2f} {nginx['p999Us'] / 1000:>8.2f} "
              f"{relay['rate'] / nginx['rate']:>5.2f}x")
    print("latencies in ms")


# ---- the machine -------------------------------------------------------------------------------------------

def machine(work):
    """Return facts about this machine and the tools, for the results page."""
    facts = {"cpus": os.cpu_count(), "cpuModel": first_line_value("/proc/cpuinfo", "model name"),
             "memory": memory_total(), "kernel": platform.release(),
             "os": os_name(), "workFilesystem": filesystem(work)}
    facts["tools"] = {
        "swift": tool_version(["swift", "--version"]),
        "nginx": tool_version(["nginx", "-v"]),
        "wrk": tool_version(["wrk", "-v"]),
        "webhook": tool_version(["webhook", "-version"]),
        "gnuplot": tool_version(["gnuplot", "--version"]),
    }
    return facts


def first_line_value(path, key):
    try:
        with open(path) as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith(key)), "")
    except OSError:
        return ""


def memory_total():
    text = first_line_value("/proc/meminfo", "MemTotal")
    # /proc/meminfo gives kibibytes, as "24683784 kB".
    return f"{int(text.split()[0]) / (1 << 20):.1f} GiB" if text else "unknown"


def os_name():
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def filesystem(path):
    output = subprocess.run(["df", "--output=source,fstype", path], capture_output=True, text=True).stdout
    lines = output.strip().splitlines()
    return " ".join(lines[-1].split()) if len(lines) > 1 else ""


def tool_version(command):
    """Return the first line a tool prints about its version, or `missing`."""
    if shutil.which(command[0]) is None:
        return "missing"
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    # nginx and wrk print their versions on standard error, and wrk exits 1 after printing it.
    text = (result.stdout + result.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def load_average():
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


# ---- results.md and the plot -------------------------------------------------------------------------------

def plot_sweep(sweep, png_path, data_path):
    """Draw rate and latency percentiles against offered connections with gnuplot, into `png_path`."""
    with open(data_path, "w") as handle:
        handle.write("# connections relay_rate relay_p50 relay_p99 relay_p999 nginx_rate nginx_p50 nginx_p99 "
                     "nginx_p999 (req/s, ms)\n")
        for point in sweep:
            relay, nginx = point["relay"], point["nginx"]
            handle.write(f"{point['connections']} {relay['rate']:.1f} {relay['p50Us'] / 1000} "
                         f"{relay['p99Us'] / 1000} {relay['p999Us'] / 1000} {nginx['rate']:.1f} "
                         f"{nginx['p50Us'] / 1000} {nginx['p99Us'] / 1000} {nginx['p999Us'] / 1000}\n")
    tics = ", ".join(f'"{point["connections"]}" {point["connections"]}' for point in sweep)
    counts = [point["connections"] for point in sweep]
    # A margin on both sides, so that gnuplot does not drop the tic label at either end of the range.
    x_range = f"[{min(counts) / 1.25}:{max(counts) * 1.25}]"
    script = f"""
set terminal pngcairo size 1400,560 font "sans,11"
set output "{png_path}"
set multiplot layout 1,2 title "Ingest, relay (journaled with fdatasync) beside nginx returning a fixed 202; wrk"
set logscale x 2
set xtics ({tics})
set xrange {x_range}
set xlabel "offered connections"
set grid
set key top left
set ylabel "requests per second"
set logscale y 10
set format y "%.0s%c"
plot "{data_path}" using 1:2 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "relay", \\
     "{data_path}" using 1:6 with linespoints lw 2 pt 5 lc rgb "#7f7f7f" title "nginx"
set ylabel "latency (ms)"
set format y "%g"
plot "{data_path}" using 1:3 with linespoints lw 2 pt 7 dt 1 lc rgb "#1f77b4" title "relay p50", \\
     "{data_path}" using 1:4 with linespoints lw 2 pt 7 dt 2 lc rgb "#1f77b4" title "relay p99", \\
     "{data_path}" using 1:5 with linespoints lw 2 pt 7 dt 3 lc rgb "#1f77b4" title "relay p99.9", \\
     "{data_path}" using 1:7 with linespoints lw 2 pt 5 dt 1 lc rgb "#7f7f7f" title "nginx p50", \\
     "{data_path}" using 1:8 with linespoints lw 2 pt 5 dt 2 lc rgb "#7f7f7f" title "nginx p99", \\
     "{data_path}" using 1:9 with linespoints lw 2 pt 5 dt 3 lc rgb "#7f7f7f" title "nginx p99.9"
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True, capture_output=True)


def write_markdown(path, report, plot_name, readme):
    """Write the results page: the run's facts, the table, the sweep table and the plot.

    `readme` is the method page's path relative to the results page, for the link.
    """
    machine_facts = report["machine"]
    part_times = ", ".join(f"{part} {seconds:.0f} s" for part, seconds in report["partSeconds"].items())
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (bench/run.py) on {report['date']}. The method is in [README.md]({readme}).",
        "",
        f"Total time {report['elapsedSeconds'] / 60:.1f} min: {part_times}.",
    ]
    if report.get("note"):
        lines += ["", report["note"]]
    lines += [
        "",
        "## Machine",
        "",
        f"- {machine_facts['cpus']} CPUs, {machine_facts['cpuModel']}, {machine_facts['memory']} of memory",
        f"- {machine_facts['os']}, Linux {machine_facts['kernel']}",
        f"- work directory (journals, events) on {machine_facts['workFilesystem']}",
    ]
    for tool, version in machine_facts["tools"].items():
        lines.append(f"- {tool}: {version}")
    lines += [
        f"- load average (1, 5, 15 min) at the start: {report['loadAverageStart']}, "
        f"at the end: {report['loadAverageEnd']}",
    ]
    lines += disk_sync_markdown(report.get("diskSync"))
    lines += [
        "",
        "## Figures",
        "",
        "Each reference ran in this run, on this machine, with the same load generator as the relay figure beside it.",
        "",
        "| measure | relay | reference | ratio | target | | reference is |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in report["results"]:
        target = (result["target"] or "").replace(">=", "≥").replace("<=", "≤")
        lines.append(f"| {result['name']} | {format_value(result['value'], result['unit'])} | "
                     f"{format_value(result['reference'], result['unit'])} | {ratio_text(result)} | {target} | "
                     f"{verdict_text(result)} | {result['referenceName'] or ''} |")
    lines += runs_markdown(report["results"])
    if report["failures"]:
        lines += ["", "Failed:", ""]
        lines += [f"- {name}: {message}" for name, message in report["failures"]]
    if report["sweep"]:
        lines += sweep_markdown(report["sweep"], plot_name)
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def runs_markdown(results):
    averaged = [result for result in results if result.get("runs")]
    if not averaged:
        return []
    return [
        "",
        "Where a figure below lists two runs, it is their mean, so that a machine whose speed drifts during the "
        "part moves the relay and its reference alike. A reference's first run went before the relay's runs and "
        "its second after them. Where it lists three runs of the relay alone, it is their median.",
        "",
    ] + [f"- {result['name']}: {runs_text(result)}" for result in averaged]


def disk_sync_markdown(disk_sync):
    if not disk_sync:
        return []
    writes = disk_sync["idle"]["writes"]
    return [
        "",
        "### Disk sync, without the relay",
        "",
        f"`portout-bench sync` on the work directory: {writes:,} appends of 2,048 bytes to a file zeroed ahead, "
        "each followed by fdatasync, as the journal writer does, without and beside a thread spinning on one CPU. "
        "The relay acknowledges no event before the sync of its batch returns, so while a slow sync lasts, every "
        "event waiting on the journal waits with it. How that reaches the ingest percentiles is explained in bench/README.md.",
        "",
        "| " + " | ".join(DISK_SYNC_HEADER) + " |",
        "| " + " | ".join("---" for _ in DISK_SYNC_HEADER) + " |",
    ] + ["| " + " | ".join(cells) + " |" for cells in disk_sync_rows(disk_sync)]


def sweep_markdown(sweep, plot_name):
    lines = [
        "",
        "## Offered connections",
        "",
        "Relay ingest (signed, unique, journaled with fdatasync) beside nginx returning a fixed 202, one wrk run "
        "per point. Latencies in ms, as wrk measures them (closed loop).",
        "",
        "| connections | relay req/s | p50 | p99 | p99.9 | nginx req/s | p50 | p99 | p99.9 | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for point in sweep:
        relay, nginx = point["relay"], point["nginx"]
        lines.append(
            f"| {point['connections']} | {relay['rate']:,.0f} | {relay['p50Us'] / 1000:.2f} | "
            f"{relay['p99Us'] / 1000:.2f} | {relay['p999Us'] / 1000:.2f} | {nginx['rate']:,.0f} | "
            f"{nginx['p50Us'] / 1000:.2f} | {nginx['p99Us'] / 1000:.2f} | {nginx['p999Us'] / 1000:.2f} | "
            f"{relay['rate'] / nginx['rate']:.2f}x |")
    if plot_name:
        lines += ["", f"![Rate and latency percentiles against offered connections]({plot_name})"]
    return lines
