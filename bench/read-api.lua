-- wrk script: GET with the read API's bearer key. With a count as the third script argument, each request
-- retrieves a random port out among the first COUNT that portout-bench wrote; otherwise it requests the path
-- given on the command line.
function init(args)
  key = args[1]
  project = args[2]
  count = tonumber(args[3])
  wrk.headers["Authorization"] = "Bearer " .. key
  math.randomseed(os.time() + (id or 0))
end

function request()
  if count then
    local path = string.format("/projects/%s/portOuts/pout_s%012d", project, math.random(0, count - 1))
    return wrk.format("GET", path)
  end
  return wrk.format("GET")
end

function done(summary, latency, requests)
  io.write(string.format('{"requests":%d,"durationUs":%d,"non2xx":%d,"p99Us":%d}\n',
    summary.requests, summary.duration, summary.errors.status, latency:percentile(99)))
end
