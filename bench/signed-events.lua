-- wrk script: each thread sends its share of the pre-signed events in bench/signed_events.py's format, one
-- request per event, and wraps around when its share runs out. Script arguments: the events file, wrk's
-- thread count and, optionally, a path that replaces each event's own path. done() prints the figures as
-- one JSON line.
--
-- wrk starts each thread as soon as its init() returns, then runs the next thread's init(). It takes its
-- start time only after the last one. Reading a large events file takes seconds per thread. Without a
-- barrier, the first thread would load the server alone during that time, and wrk would count those requests
-- in a run it times from later. So no thread sends until the last init() has created a marker file.
local ffi = require("ffi")
ffi.cdef("int usleep(unsigned int microseconds);")

local threads = {}
local counter = 0
-- A fresh name for this run, so that a marker left behind by an earlier run never opens the barrier early.
-- Every thread's Lua state runs this line too, but only the main state's name reaches the threads, as
-- `marker`.
local run_marker = os.tmpname()
os.remove(run_marker)

function setup(thread)
  thread:set("id", counter)
  thread:set("marker", run_marker)
  counter = counter + 1
  table.insert(threads, thread)
end

local requests = {}
local index = 0

function init(args)
  local path = args[1]
  local threadCount = tonumber(args[2])
  local target = args[3]
  if id >= threadCount then
    os.remove(marker)
    error(string.format("the thread count argument (%d) is smaller than wrk's -t; pass the same number",
      threadCount))
  end
  local line_number = 0
  for line in io.lines(path) do
    if line_number % threadCount == id then
      local body, event_id, timestamp, signature, hub_signature, event_path =
        line:match("([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)")
      requests[#requests + 1] = wrk.format("POST", target or event_path, {
        ["Content-Type"] = "application/json",
        ["webhook-id"] = event_id,
        ["webhook-timestamp"] = timestamp,
        ["webhook-signature"] = signature,
        ["X-Hub-Signature-256"] = hub_signature,
      }, body)
    end
    line_number = line_number + 1
  end
  if id == threadCount - 1 then
    io.open(marker, "w"):close()
  end
end

-- Reading 560,000 events takes about 4 s per thread, so a 120 s limit leaves room for larger files and more
-- threads.
local MAX_BARRIER_WAIT_SECONDS = 120
local calls = 0
local started = false

function request()
  calls = calls + 1
  -- wrk calls the first thread's request() once from its main thread, right after that thread's init(), to
  -- check the request. Waiting in that call would stop the main thread before it starts the others.
  if not started and not (id == 0 and calls == 1) then
    -- Blocks this thread's event loop on purpose, so its open connections send nothing yet. A thread count
    -- argument larger than wrk's -t means no thread ever creates the marker, and wrk ignores Ctrl-C while its
    -- threads are blocked, so the wait ends with an error instead of hanging.
    local opened = io.open(marker, "r")
    local deadline = os.time() + MAX_BARRIER_WAIT_SECONDS
    while not opened do
      if os.time() >= deadline then
        error(string.format("the last thread did not finish loading events within %d s; the thread count " ..
          "argument must equal wrk's -t", MAX_BARRIER_WAIT_SECONDS))
      end
      ffi.C.usleep(1000)
      opened = io.open(marker, "r")
    end
    opened:close()
    started = true
  end
  index = index + 1
  if index > #requests then index = 1 end
  return requests[index]
end

function done(summary, latency, requests)
  os.remove(run_marker)
  local errors = summary.errors
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"non2xx":%d,"socketErrors":%d,"p50Us":%d,"p99Us":%d,"p999Us":%d}\n',
    summary.requests, summary.duration, errors.status, errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
