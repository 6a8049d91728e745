-- wrk script: each thread sends its share of the pre-signed events in bench/signed_events.py's format, one
-- request per event, and wraps around when its share runs out. Script arguments: the events file, wrk's
-- thread count and, optionally, a path that replaces each event's own path. done() prints the figures as
-- one JSON line.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local requests = {}
local index = 0

function init(args)
  local path = args[1]
  local threadCount = tonumber(args[2])
  local target = args[3]
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
end

function request()
  index = index + 1
  if index > #requests then index = 1 end
  return requests[index]
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"non2xx":%d,"socketErrors":%d,"p50Us":%d,"p99Us":%d,"p999Us":%d}\n',
    summary.requests, summary.duration, errors.status, errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
