#!/usr/bin/env bash
# Bound tokens (issue 21), as ratios in one run: a protected request
# (`GET /v1/auth/verify`, what nginx forward auth sends) with a DPoP-bound
# token and a fresh proof each time, and with a network-bound token,
# against the same request with a plain Bearer token; verified-token cache
# hits (one token) and misses (a new token each request); and the p99 the
# fleet-wide replay check (Redis SET NX) adds, as the p99 of DPoP requests
# on a fleet instance (PostgreSQL + Redis) minus that on the embedded store
# (replay memory in process). Release build, wrk, loopback only, bounded.
# Writes bench/bound.json. Access tokens live an hour here, so the tokens
# made before the runs outlive them.
#
# Knobs (env): BOUND_SECS (3) per hit run, BOUND_MISS_SECS (1), BOUND_ROUNDS
# (3), BOUND_TOKENS (20000 distinct DPoP-bound tokens), BOUND_LINES (150000
# distinct Bearer and network-bound tokens: a miss run sends each once, so
# a run must not outlast them; `ran_out` in bench/bound.json says if one did).
set -euo pipefail

SECS=${BOUND_SECS:-3}
MISS_SECS=${BOUND_MISS_SECS:-1}
ROUNDS=${BOUND_ROUNDS:-3}
TOKENS=${BOUND_TOKENS:-20000}
LINES=${BOUND_LINES:-150000}

# shellcheck source=scripts/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/services.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
ensure_postgres
ensure_redis
ensure_test_urls
ensure_package wrk wrk
ensure_package curl curl

WORK=$(mktemp -d "${TMPDIR:-/tmp}/recall-bound.XXXXXX")
PIDS=()
DB="recall_bound_$$"
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  psql -X -q "$RECALL_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log "build: release recall and bench_suite"
cargo build --release --bin recall --example bench_suite --quiet || die "build failed"
SUITE="$ROOT/target/release/examples/bench_suite"
ADMIN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
MASTER=$(head -c 32 /dev/urandom | base64)
psql -X -q "$RECALL_TEST_DATABASE_URL" -c "CREATE DATABASE $DB" >/dev/null
PG_URL="${RECALL_TEST_DATABASE_URL%/*}/$DB"

# start NAME PORT ENV...: a release instance.
start() {
  local name=$1 port=$2
  shift 2
  mkdir -p "$WORK/$name"
  env RECALL_BIND=127.0.0.1:$port RECALL_PUBLIC_URL=http://127.0.0.1:$port \
    RECALL_DATA_DIR="$WORK/$name/data" RECALL_ADMIN_TOKEN="$ADMIN" \
    RECALL_RATE_LIMIT_PER_MIN=100000000 RECALL_ACCESS_TTL_SECS=3600 RUST_LOG=warn "$@" \
    "$ROOT/target/release/recall" serve >"$WORK/$name/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$WORK/$name/log" >&2; die "$name did not start"; }
  curl -fsS -X PUT "http://127.0.0.1:$port/v1/admin/policies/mobile" -H "authorization: Bearer $ADMIN" \
    -H 'content-type: application/json' \
    -d '{"access_ttl_secs":3600,"refresh_ttl_secs":86400,"session_max_secs":86400,"binding":"network","on_mismatch":"reject"}' \
    >/dev/null || die "could not set the mobile policy on $name"
  log "$name: tokens ($TOKENS per kind)"
  "$SUITE" bound-prep --base "http://127.0.0.1:$port" --out "$WORK/$name" --tokens "$TOKENS" \
    --lines "${PREP_LINES:-$LINES}" >/dev/null || die "bound-prep failed on $name"
}

# load NAME PORT CASE SECS: one wrk run; prints its WRK_JSON.
load() {
  local name=$1 port=$2 case=$3 secs=$4 lines
  lines="$WORK/$name/${case}.txt"
  case $case in
    dpop_hit) "$SUITE" bound-proofs --tokens "$WORK/$name/dpop_tokens.txt" --hit --lines 160000 \
      --url "http://127.0.0.1:$port/v1/auth/verify" --out "$lines" >/dev/null ;;
    dpop_miss) "$SUITE" bound-proofs --tokens "$WORK/$name/dpop_tokens.txt" --lines "$TOKENS" \
      --url "http://127.0.0.1:$port/v1/auth/verify" --out "$lines" >/dev/null ;;
  esac
  BENCH_LINES=$lines BENCH_THREADS=2 wrk -t2 -c32 -d"${secs}s" --timeout 5s \
    -s "$ROOT/bench/wrk_bound.lua" "http://127.0.0.1:$port/" >"$WORK/wrk.txt" 2>&1 ||
    { cat "$WORK/wrk.txt" >&2; return 1; }
  sed -n 's/^WRK_JSON //p' "$WORK/wrk.txt"
}

start fleet 18811 RECALL_DATABASE_URL="$PG_URL" RECALL_MASTER_KEY="$MASTER" \
  RECALL_REDIS_URL="$RECALL_TEST_REDIS_URL" RECALL_REDIS_CHANNEL="recall:bound:$$"
PREP_LINES=1000 start embedded 18812

: >"$WORK/results.jsonl"
for round in $(seq 1 "$ROUNDS"); do
  for case in bearer_hit dpop_hit net_hit bearer_miss dpop_miss net_miss; do
    secs=$SECS
    [[ $case == *_miss ]] && secs=$MISS_SECS
    r=$(load fleet 18811 "$case" "$secs")
    echo "{\"side\":\"fleet\",\"case\":\"$case\",\"round\":$round,\"wrk\":$r}" >>"$WORK/results.jsonl"
    printf '    round %d fleet    %-12s %s\n' "$round" "$case" "$r"
  done
  r=$(load embedded 18812 dpop_hit "$SECS")
  echo "{\"side\":\"embedded\",\"case\":\"dpop_hit\",\"round\":$round,\"wrk\":$r}" >>"$WORK/results.jsonl"
  printf '    round %d embedded %-12s %s\n' "$round" dpop_hit "$r"
done

python3 - "$WORK/results.jsonl" "$ROOT/bench/bound.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
# A run that ran out of fresh proofs sent some again: those replays must be
# refused (401), so its refusals are expected, not a failure.
bad = [r for r in rows
       if r["wrk"]["socket_errors"] or (r["wrk"]["non2xx"] and not r["wrk"].get("ran_out"))]
def best(side, case):
    rs = [r["wrk"] for r in rows if r["side"] == side and r["case"] == case]
    return max(rs, key=lambda w: w["rps"])
out = {"runs": rows, "refused_or_failed_runs": len(bad)}
for c in ["bearer_hit", "dpop_hit", "net_hit", "bearer_miss", "dpop_miss", "net_miss"]:
    out[c] = best("fleet", c)
out["embedded_dpop_hit"] = best("embedded", "dpop_hit")
out["dpop_vs_bearer_hit"] = out["dpop_hit"]["rps"] / out["bearer_hit"]["rps"]
out["dpop_vs_bearer_miss"] = out["dpop_miss"]["rps"] / out["bearer_miss"]["rps"]
out["net_vs_bearer_hit"] = out["net_hit"]["rps"] / out["bearer_hit"]["rps"]
out["net_vs_bearer_miss"] = out["net_miss"]["rps"] / out["bearer_miss"]["rps"]
out["replay_check_p99_added_us"] = out["dpop_hit"]["p99_us"] - out["embedded_dpop_hit"]["p99_us"]
json.dump(out, open(sys.argv[2], "w"), indent=2)
f = lambda c: f'{out[c]["rps"]:.0f}/s (p99 {out[c]["p99_us"]} us)'
print(f'    cache hit:  Bearer {f("bearer_hit")}, DPoP {f("dpop_hit")} = {out["dpop_vs_bearer_hit"]:.2f}x (goal >= 0.5), '
      f'network-bound {f("net_hit")} = {out["net_vs_bearer_hit"]:.2f}x (goal >= 0.95)')
print(f'    cache miss: Bearer {f("bearer_miss")}, DPoP {f("dpop_miss")} = {out["dpop_vs_bearer_miss"]:.2f}x, '
      f'network-bound {f("net_miss")} = {out["net_vs_bearer_miss"]:.2f}x')
print(f'    replay check (Redis SET NX): p99 {out["dpop_hit"]["p99_us"]} us on the fleet vs '
      f'{out["embedded_dpop_hit"]["p99_us"]} us in process: +{out["replay_check_p99_added_us"]} us')
if bad:
    print(f"    {len(bad)} runs had refusals or socket errors (see bench/bound.json)")
    sys.exit(1)
PY
