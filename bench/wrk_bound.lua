-- wrk script for scripts/bench_bound.sh: one request per line of
-- BENCH_LINES, `SCHEME TOKEN PROOF XFF` (PROOF, XFF `-` when absent), to
-- GET /v1/auth/verify. Each thread takes its own slice and never sends a
-- line twice (a DPoP proof is good once): past its slice it stops counting
-- (`ran_out` in the output; the script makes slices longer than a run).
-- BENCH_THREADS must equal wrk's -t. done() prints WRK_JSON {...}.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  local all = {}
  for line in io.lines(os.getenv("BENCH_LINES")) do
    if #line > 0 then
      all[#all + 1] = line
    end
  end
  local n = tonumber(os.getenv("BENCH_THREADS") or "1")
  local per = math.floor(#all / n)
  reqs = {}
  for i = (id - 1) * per + 1, id * per do
    local scheme, token, proof, xff = all[i]:match("^(%S+) (%S+) (%S+) (%S+)$")
    local h = { ["Authorization"] = scheme .. " " .. token }
    if proof ~= "-" then
      h["DPoP"] = proof
    end
    if xff ~= "-" then
      h["X-Forwarded-For"] = xff
    end
    reqs[#reqs + 1] = wrk.format("GET", "/v1/auth/verify", h)
  end
  if #reqs == 0 then
    error("thread " .. id .. ": no lines in " .. os.getenv("BENCH_LINES"))
  end
  idx = 0
  ran_out = 0
end

function request()
  idx = idx + 1
  if idx > #reqs then
    ran_out = ran_out + 1
    idx = 1
  end
  return reqs[idx]
end

function done(summary, latency, requests)
  local e = summary.errors
  local out = 0
  for _, t in ipairs(threads) do
    out = out + (t:get("ran_out") or 0)
  end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"rps":%.1f,"mean_us":%.1f,' ..
    '"p50_us":%d,"p99_us":%d,"non2xx":%d,"socket_errors":%d,"ran_out":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency.mean, latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout, out))
end
