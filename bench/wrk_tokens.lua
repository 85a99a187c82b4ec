-- wrk script for scripts/bench.sh: every request carries
-- `Authorization: Bearer <token>`, rotating through the lines of the file
-- named by BENCH_TOKENS. Requests are formatted once in init(), so the
-- per-request cost in wrk is the same for every guard.
--
-- BENCH_THREADS must equal wrk's -t. BENCH_SLICE=1 gives each thread its
-- own slice of the file (no token is sent twice while the slice lasts: the
-- miss-heavy run); otherwise every thread walks the whole file from its own
-- offset. done() prints one line: WRK_JSON {...} (latencies in microseconds).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  local path = os.getenv("BENCH_TOKENS")
  local all = {}
  for line in io.lines(path) do
    if #line > 0 then
      all[#all + 1] = line
    end
  end
  local n = tonumber(os.getenv("BENCH_THREADS") or "1")
  local per = math.floor(#all / n)
  local lo, hi = 1, #all
  if os.getenv("BENCH_SLICE") == "1" then
    lo = (id - 1) * per + 1
    hi = id * per
  end
  reqs = {}
  for i = lo, hi do
    reqs[#reqs + 1] = wrk.format("GET", "/", { ["Authorization"] = "Bearer " .. all[i] })
  end
  -- Start each thread at its own offset.
  idx = ((id - 1) * per) % #reqs
  nreqs = #reqs
  sent = 0
end

function request()
  idx = idx % #reqs + 1
  sent = sent + 1
  return reqs[idx]
end

function done(summary, latency, requests)
  local e = summary.errors
  local sent, slice = 0, 0
  for _, t in ipairs(threads) do
    sent = math.max(sent, t:get("sent") or 0)
    slice = t:get("nreqs") or 0
  end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"rps":%.1f,"mean_us":%.1f,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"non2xx":%d,' ..
    '"socket_errors":%d,"max_sent_per_thread":%d,"tokens_per_thread":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.status,
    e.connect + e.read + e.write + e.timeout, sent, slice))
end
