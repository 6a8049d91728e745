"""The shared state of a benchmark run: the binaries, the settings, a work directory, and events and journals
made once per run."""
import os
import shutil
import subprocess

from servers import INBOUND_SECRET
from signed_events import write_events


class BenchContext:
    def __init__(self, arguments, bench_binary, work):
        self.arguments = arguments
        self.relay_binary = arguments.binary
        self.bench_binary = bench_binary
        self.work = work
        self._events = {}

    @property
    def duration(self):
        return self.arguments.duration

    def events(self, count, tenants=1):
        """Return the path of a file of at least `count` unique signed events over `tenants` tenants.

        Files are written once per run and shared between parts, since every relay run starts on an empty
        data directory and so never receives an event twice.
        """
        cached = self._events.get(tenants)
        if cached and cached[1] >= count:
            return cached[0]
        path = os.path.join(self.work, f"events-{tenants}.tsv")
        write_events(path, count, INBOUND_SECRET, tenants=tenants)
        # Written back now, so that flushing the events file does not slow the relay's fdatasync calls.
        os.sync()
        self._events[tenants] = (path, count)
        return path

    def events_count(self, path):
        return next(count for (cached, count) in self._events.values() if cached == path)

    def journal(self, name, records, *options):
        """Write a fresh journal with `portout-bench journal` into WORK/NAME and return that data directory.

        `options` are passed on, for example `--port-outs 10000` or `--destinations sink0`.
        """
        data = os.path.join(self.work, name)
        shutil.rmtree(data, ignore_errors=True)
        subprocess.run([self.bench_binary, "journal", "--data-dir", data, "--records", str(records),
                        "--tenant", "bench"] + list(options), check=True, capture_output=True)
        return data
