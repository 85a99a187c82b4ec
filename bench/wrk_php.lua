-- wrk script for scripts/bench_php.sh: every request is GET BENCH_PATH with
-- `Authorization: Bearer BENCH_TOKEN` (one live token, sent on every way,
-- the unprotected one too, so the requests differ only in their path).
-- done() prints WRK_JSON {...}; non2xx counts every answer of 400 and up
-- (wrk's status errors), socket_errors every connect, read, write and
-- timeout error. The script checks both are 0.

local token = os.getenv("BENCH_TOKEN")
local path = os.getenv("BENCH_PATH")

function init(args)
  if not token or token == "" or not path or path == "" then
    error("BENCH_TOKEN and BENCH_PATH must be set")
  end
  req = wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
end

function request()
  return req
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"rps":%.1f,"mean_us":%.1f,' ..
    '"p50_us":%d,"p99_us":%d,"non2xx":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency.mean, latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
