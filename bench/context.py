"""The shared state of a benchmark run: the binaries, the settings, a work directory, and events and journals
made once per run."""
import os
import shutil
import subprocess

from servers import INBOUND_SECRET
from signed_events import write_events

# Events for the reference servers, which keep no state, so wrk may send them the same events again. Small,
# because wrk builds every request of its file before the run, at several seconds per 100,000 events.
REFERENCE_EVENTS = 50000


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

    def relay_events(self, duration, tenants=1):
        """Return a file with enough unique events for a wrk run of `duration` seconds against the relay.

        The count assumes the relay accepts at most --max-ingest-rate requests a second, and the caller checks
        afterwards that wrk sent no more requests than that (ingest.check_unique).
        """
        return self.events(self.arguments.max_ingest_rate * duration, tenants)

    def reference_events(self):
        return self.events(REFERENCE_EVENTS)

    def events(self, count, tenants=1):
        """Return the path of a file of `count` unique signed events over `tenants` tenants.

        Files are written once per run and shared between parts, since every relay run starts on an empty
        data directory and so never receives an event twice.
        """
        key = (count, tenants)
        if key not in self._events:
            path = os.path.join(self.work, f"events-{count}-{tenants}.tsv")
            write_events(path, count, INBOUND_SECRET, tenants=tenants)
            # Written back now, so that flushing the events file does not slow the relay's fdatasync calls.
            os.sync()
            self._events[key] = path
        return self._events[key]

    def events_count(self, path):
        return next(count for (count, _), cached in self._events.items() if cached == path)

    def journal(self, name, records, *options):
        """Write a fresh journal with `portout-bench journal` into WORK/NAME and return that data directory.

        `options` are passed on, for example `--port-outs 10000` or `--destinations sink0`.
        """
        data = os.path.join(self.work, name)
        shutil.rmtree(data, ignore_errors=True)
        subprocess.run([self.bench_binary, "journal", "--data-dir", data, "--records", str(records),
                        "--tenant", "bench"] + list(options), check=True, capture_output=True)
        return data
