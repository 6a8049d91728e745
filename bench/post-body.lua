-- wrk script: POST the contents of the file given as the first script argument on every request.
function init(args)
  local handle = io.open(args[1], "rb")
  wrk.method = "POST"
  wrk.body = handle:read("*a")
  wrk.headers["Content-Type"] = "application/json"
  handle:close()
end

function done(summary, latency, requests)
  io.write(string.format('{"requests":%d,"durationUs":%d,"non2xx":%d}\n',
    summary.requests, summary.duration, summary.errors.status))
end
