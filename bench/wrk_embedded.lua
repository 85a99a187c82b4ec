-- wrk script for scripts/bench_embedded.sh. BENCH_MODE=me sends
-- `GET /v1/me` with the access tokens of BENCH_TOKENS in turn; BENCH_MODE=
-- refresh chains refresh tokens: each thread keeps a pool of its slice of
-- BENCH_TOKENS (more tokens than connections), takes one per request and
-- puts back the one the answer carries, so no token is ever sent twice.
-- BENCH_THREADS must equal wrk's -t. done() prints one line: WRK_JSON {...}.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  mode = os.getenv("BENCH_MODE") or "me"
  local all = {}
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if #line > 0 then
      all[#all + 1] = line
    end
  end
  local n = tonumber(os.getenv("BENCH_THREADS") or "1")
  local per = math.floor(#all / n)
  pool = {}
  for i = (id - 1) * per + 1, id * per do
    pool[#pool + 1] = all[i]
  end
  if #pool == 0 then
    error("thread " .. id .. ": no tokens in " .. os.getenv("BENCH_TOKENS"))
  end
  idx = 0
  lost = 0
end

function request()
  if mode == "me" then
    idx = idx % #pool + 1
    return wrk.format("GET", "/v1/me", { ["Authorization"] = "Bearer " .. pool[idx] })
  end
  local token = table.remove(pool)
  if token == nil then
    lost = lost + 1
    token = "none"
  end
  return wrk.format("POST", "/v1/auth/refresh", { ["Content-Type"] = "application/json" },
    '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  if mode == "refresh" then
    local next = body:match('"refresh_token":"([^"]+)"')
    if next then
      pool[#pool + 1] = next
    end
  end
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
