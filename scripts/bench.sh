#!/usr/bin/env bash
# Benchmarks of issues 5 and 24, all in one run: Recall's request path against no
# auth, a naive JWT + Redis denylist and a PostgreSQL session lookup (wrk);
# the cost of each step (criterion); propagation through a 3-instance fleet;
# login throughput and overload; start-up with 1,000,000 events; memory per
# revoked session; the write path (group commit: appends against writers,
# refresh per core, p99 against the commit before group commit, kept in
# bench/writes_baseline.json) and a PostgreSQL failover. Prints one table, writes bench/results.json and
# bench/RESULTS.md. Needs PostgreSQL and Redis (started here if they are
# installed but down, as scripts/test.sh does) and wrk (installed with
# apt-get if missing), and plots the scale curves (matplotlib from PyPI).
# Loopback only; every load is bounded in time.
#
# Knobs (env): BENCH_WRK_THREADS (2), BENCH_WRK_CONNS (64), BENCH_WRK_SECS (4)
# x BENCH_WRK_ROUNDS (3) per guard (the miss run too),
# BENCH_MISS_TOKENS (600000: a third per round, so no slice wraps),
# RECALL_TEST_DATABASE_URL, RECALL_TEST_REDIS_URL.
set -euo pipefail

WRK_THREADS=${BENCH_WRK_THREADS:-2}
WRK_CONNS=${BENCH_WRK_CONNS:-64}
WRK_SECS=${BENCH_WRK_SECS:-4}
WRK_ROUNDS=${BENCH_WRK_ROUNDS:-3}
MISS_TOKENS=${BENCH_MISS_TOKENS:-600000}

# shellcheck source=scripts/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/services.sh"

ensure_wrk() {
  ensure_package wrk wrk
}

# --- setup -------------------------------------------------------------------

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH"

log "checking services and tools"
ensure_postgres
ensure_redis
ensure_wrk
ensure_test_urls
log "PostgreSQL, Redis and wrk ready"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/recall-bench.XXXXXX")
GUARDS_PID=
cleanup() {
  if [ -n "$GUARDS_PID" ] && kill -0 "$GUARDS_PID" 2>/dev/null; then
    touch "$WORK/guards/stop"
    sleep 2
    kill "$GUARDS_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

export BENCH_NPROC BENCH_CPU BENCH_MEM BENCH_LOAD BENCH_DATE BENCH_COMMIT
BENCH_NPROC=$(nproc)
BENCH_CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
BENCH_MEM=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
BENCH_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
BENCH_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
BENCH_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  BENCH_COMMIT="$BENCH_COMMIT (with local changes)"
fi
log "machine: $BENCH_NPROC cores ($BENCH_CPU), $BENCH_MEM; load average $BENCH_LOAD"

total_started=$SECONDS
FAILED=()

# Runs one measure; a failure is reported and the run goes on.
measure() {
  local name=$1
  shift
  local started=$SECONDS
  log "$name"
  if "$@"; then
    log "$name: done ($((SECONDS - started))s)"
  else
    printf '==> [%s] FAILED: %s (after %ds)\n' "$(date +%H:%M:%S)" "$name" $((SECONDS - started)) >&2
    FAILED+=("$name")
  fi
}

# --- build ---------------------------------------------------------------------

log "build: cargo build --release --examples; cargo bench --no-run (a cold tree takes minutes)"
build_started=$SECONDS
cargo build --release --examples --bin recall --quiet || die "build failed"
cargo bench --bench extractor --no-run --quiet || die "bench build failed"
export BENCH_BUILD_S=$((SECONDS - build_started))
log "build: done (${BENCH_BUILD_S}s)"
measure_started=$SECONDS

SUITE="$ROOT/target/release/examples/bench_suite"
GUARDS="$ROOT/target/release/examples/bench_guards"
mkdir -p "$WORK/tmp"

# --- 2. micro (criterion) --------------------------------------------------------

micro() {
  CRITERION_HOME="$WORK/criterion" cargo bench --quiet --bench extractor -- \
    --warm-up-time 1 --measurement-time 3 --noplot >"$WORK/criterion.log" 2>&1 ||
    { tail -n 20 "$WORK/criterion.log"; return 1; }
  awk '/^request_path\//{ n = $1 } /time:/{ sub(/.*time:[ \t]*/, ""); printf "    %-32s %s\n", n, $0 }' \
    "$WORK/criterion.log"
}
measure "2. micro: criterion, 1 s warm-up + 3 s per step" micro

# --- 1. request path (wrk) -------------------------------------------------------

port_of() { grep -o "\"$1\":[0-9]*" "$WORK/guards/ports.json" | cut -d: -f2; }

run_wrk() { # port tokens-file secs slice
  BENCH_TOKENS=$2 BENCH_THREADS=$WRK_THREADS BENCH_SLICE=$4 \
    wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$3"s --timeout 5s --latency \
    -s "$ROOT/bench/wrk_tokens.lua" "http://127.0.0.1:$1/"
}

show() { # name label file
  printf '    %-12s %-8s %s\n' "$1" "$2" "$(grep '^WRK_JSON' "$3" |
    sed -E 's/.*"rps":([0-9.]+).*"p50_us":([0-9]+).*"p99_us":([0-9]+).*"non2xx":([0-9]+),"socket_errors":([0-9]+).*/\1 req\/s  p50 \2 us  p99 \3 us  non-2xx \4  socket errors \5/')"
}

request_path() {
  mkdir -p "$WORK/guards"
  "$GUARDS" --dir "$WORK/guards" --miss-tokens "$MISS_TOKENS" --max-secs 420 \
    >"$WORK/guards.log" 2>&1 &
  GUARDS_PID=$!
  local i
  for ((i = 0; i < 240; i++)); do
    [ -f "$WORK/guards/ready" ] && break
    kill -0 "$GUARDS_PID" 2>/dev/null || { cat "$WORK/guards.log"; return 1; }
    sleep 1
  done
  cat "$WORK/guards.log"
  [ -f "$WORK/guards/ready" ] || return 1
  cp "$WORK/guards/ports.json" "$WORK/ports.json"
  local tokens="$WORK/guards/tokens.txt" sessions="$WORK/guards/sessions.txt"
  local name port file round
  local specs=("none:$tokens" "recall:$tokens" "naive:$tokens" "stateful:$sessions")
  split -n "l/$WRK_ROUNDS" -d -a 2 "$WORK/guards/miss_tokens.txt" "$WORK/guards/miss_tmp_"
  for ((round = 0; round < WRK_ROUNDS; round++)); do
    mv "$WORK/guards/miss_tmp_$(printf %02d "$round")" "$WORK/guards/miss_$round"
  done
  # Warm-up (connections, pools, caches); not recorded.
  for spec in "${specs[@]}"; do
    IFS=: read -r name file <<<"$spec"
    run_wrk "$(port_of "$name")" "$file" 2 0 >/dev/null
  done
  # Interleaved rounds, so a burst of other work on the machine does not
  # land on one guard only; the report takes each guard's best round.
  for ((round = 1; round <= WRK_ROUNDS; round++)); do
    for spec in "${specs[@]}"; do
      IFS=: read -r name file <<<"$spec"
      port=$(port_of "$name")
      run_wrk "$port" "$file" "$WRK_SECS" 0 >"$WORK/wrk_${name}_r$round.txt"
      show "$name" "round $round" "$WORK/wrk_${name}_r$round.txt"
    done
    # Every token new: each round has its own part of the fresh tokens, and
    # each wrk thread sends its own slice of that part once (cache misses).
    run_wrk "$(port_of recall)" "$WORK/guards/miss_$((round - 1))" "$WRK_SECS" 1 \
      >"$WORK/wrk_recall_miss_r$round.txt"
    show recall_miss "round $round" "$WORK/wrk_recall_miss_r$round.txt"
  done
  touch "$WORK/guards/stop"
  for ((i = 0; i < 30; i++)); do
    kill -0 "$GUARDS_PID" 2>/dev/null || break
    sleep 1
  done
  kill "$GUARDS_PID" 2>/dev/null || true
  wait "$GUARDS_PID" 2>/dev/null || true
  GUARDS_PID=
  tail -n 1 "$WORK/guards.log"
}
measure "1. request path: wrk -t$WRK_THREADS -c$WRK_CONNS, $WRK_ROUNDS interleaved rounds of ${WRK_SECS}s per guard" request_path

# --- 11. sidecar through nginx ----------------------------------------------------

# shellcheck source=scripts/bench_nginx.sh
source "$ROOT/scripts/bench_nginx.sh"
measure "11. nginx auth_request through the sidecar vs nginx with no auth" nginx_sidecar

# --- 3-5. fleet, login, start-up, memory -----------------------------------------

suite() { # name subcommand args...
  local name=$1
  shift
  "$SUITE" --dir "$WORK/tmp" "$@" >"$WORK/$name.json"
}
measure "3. propagation: 1,000 revocations through A of a 3-instance fleet" suite fleet fleet
measure "11. propagation to verifiers: 500 revocations, 2 verifiers on SSE feeds" suite verifiers verifiers
measure "12. SSF: 300 revocations to a push receiver" suite ssf ssf
measure "4. login: raw argon2id vs Recall::login, then 2x overload" suite login login
measure "5. start-up: 1,000,000 events in the log (SQLite)" suite startup startup
measure "5. memory: 100,000 revoked sessions" suite memory memory
measure "13. scale: 3/10/30 instances, 10k/100k/1M window, 1/8/32 writers, refresh per core" \
  suite scale scale
measure "17. writes: appends at 1/8/32 writers, refresh per core, refresh and login p99 (group commit)" \
  suite writes writes
measure "19. the log as evidence: verify and prune 1,000,000 events (PostgreSQL, SQLite)" \
  suite evidence evidence
# A synchronous standby promoted under load on a 3-instance fleet; the
# seconds from promotion until every instance writes again.
measure "18. PostgreSQL failover: promotion until the fleet writes again" \
  env FAILOVER_JSON="$WORK/failover.json" bash "$ROOT/scripts/failover.sh" 30
measure "6. flood: peak RSS of the recall binary, 400 concurrent logins, then 400 reset" \
  suite flood flood --binary "$ROOT/target/release/recall"
# The embedded store against commit 2471758 (built here; its own figures,
# printed and in bench/embedded.json, not in the table).
measure "14. embedded store: refresh and /v1/me against 2471758, alternating rounds" \
  bash "$ROOT/scripts/bench_embedded.sh"
# Bound tokens: DPoP-bound and network-bound requests against Bearer ones,
# and the p99 of the fleet-wide replay check (bench/bound.json).
measure "15. bound tokens: DPoP and network-bound vs Bearer, cache hits and misses" \
  bash "$ROOT/scripts/bench_bound.sh"
measure "16. PHP: no auth vs nginx auth_request + sidecar vs PHP introspection (sidecar, Recall)" \
  bash "$ROOT/scripts/bench_php.sh"

# --- report ------------------------------------------------------------------------

export BENCH_MEASURE_S=$((SECONDS - measure_started))
export BENCH_TOTAL_S=$((SECONDS - total_started))
export BENCH_WRK_THREADS=$WRK_THREADS BENCH_WRK_CONNS=$WRK_CONNS BENCH_WRK_SECS=$WRK_SECS
export BENCH_WRK_ROUNDS=$WRK_ROUNDS
log "report (bench/results.json, bench/RESULTS.md)"
"$SUITE" report --results "$WORK" --criterion "$WORK/criterion" --out "$ROOT/bench"
if [ -s "$WORK/scale.json" ]; then
  ensure_matplotlib
  cp "$WORK/scale.json" "$ROOT/bench/scale.json"
  python3 scripts/plot_scale.py "$ROOT/bench/scale.json" "$ROOT/bench"
fi
log "finished in ${BENCH_TOTAL_S}s (build ${BENCH_BUILD_S}s, measurements ${BENCH_MEASURE_S}s)"
if [ "${#FAILED[@]}" -gt 0 ]; then
  die "measures that did not run: ${FAILED[*]}"
fi
