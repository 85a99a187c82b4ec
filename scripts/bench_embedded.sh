#!/usr/bin/env bash
# The embedded store against commit 2471758 (issue 20, point 3), side by side
# in one run: both release builds on the embedded default (SQLite), each
# with a data directory of its own, alternating rounds of wrk on the same
# machine. Refresh: 16 connections chaining refresh tokens; /v1/me: 64
# connections with access tokens. The old commit is built here (its own
# worktree and target directory under target/, kept for the next run).
# Prints each round and the best of each side, and writes
# bench/embedded.json. Loopback only; every load is bounded in time.
#
# Knobs (env): EMB_ROUNDS (4), EMB_SECS (5), EMB_BASE (2471758).
set -euo pipefail

ROUNDS=${EMB_ROUNDS:-4}
SECS=${EMB_SECS:-5}
BASE=${EMB_BASE:-2471758}

# shellcheck source=scripts/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/services.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
ensure_package wrk wrk
ensure_package curl curl

WORK=$(mktemp -d "${TMPDIR:-/tmp}/recall-emb.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  git -C "$ROOT" worktree remove --force "$WORK/base" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log "build: this tree and $BASE (release; a cold $BASE build takes minutes)"
cargo build --release --bin recall --quiet || die "build failed"
cp target/release/recall "$WORK/recall-now"
git worktree add --detach "$WORK/base" "$BASE" >/dev/null 2>&1 || die "no commit $BASE"
(cd "$WORK/base" && CARGO_TARGET_DIR="$ROOT/target/bench-$BASE" cargo build --release --bin recall --quiet) ||
  die "build of $BASE failed"
cp "target/bench-$BASE/release/recall" "$WORK/recall-base"

# start NAME BINARY PORT: an instance on the embedded default.
start() {
  mkdir -p "$WORK/$1"
  RECALL_BIND=127.0.0.1:$3 RECALL_DATA_DIR="$WORK/$1/data" RECALL_RATE_LIMIT_PER_MIN=100000000 \
    RUST_LOG=warn "$2" serve >"$WORK/$1/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$3/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$WORK/$1/log" >&2
  die "$1 did not start"
}

# tokens NAME PORT N: N sessions; writes NAME/access and NAME/refresh.
tokens() {
  local port=$2 user="bench$RANDOM$RANDOM"
  curl -fsS -X POST "http://127.0.0.1:$port/v1/users" -H 'content-type: application/json' \
    -d "{\"username\":\"$user\",\"password\":\"correct horse battery\"}" >/dev/null
  : >"$WORK/$1/access"
  : >"$WORK/$1/refresh"
  for _ in $(seq 1 "$3"); do
    curl -fsS -X POST "http://127.0.0.1:$port/v1/auth/login" -H 'content-type: application/json' \
      -d "{\"username\":\"$user\",\"password\":\"correct horse battery\"}" >"$WORK/login.json"
    # The body has no final newline: add one, or the tokens run together.
    echo >>"$WORK/login.json"
    sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' "$WORK/login.json" >>"$WORK/$1/access"
    sed -n 's/.*"refresh_token":"\([^"]*\)".*/\1/p' "$WORK/login.json" >>"$WORK/$1/refresh"
  done
}

# load NAME PORT MODE CONNS FILE: one wrk run; prints its requests per second.
load() {
  BENCH_MODE=$3 BENCH_TOKENS=$5 BENCH_THREADS=2 \
    wrk -t2 -c"$4" -d"$SECS"s --timeout 5s -s "$ROOT/bench/wrk_embedded.lua" \
    "http://127.0.0.1:$2/" >"$WORK/wrk.txt" 2>&1 || { cat "$WORK/wrk.txt" >&2; return 1; }
  local json
  json=$(sed -n 's/^WRK_JSON //p' "$WORK/wrk.txt")
  [ "$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["non2xx"])')" = 0 ] ||
    { echo "$1 $3: answers that were not 2xx: $json" >&2; return 1; }
  echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rps"])'
}

start now "$WORK/recall-now" 18601
start base "$WORK/recall-base" 18602
tokens now 18601 64
tokens base 18602 64
export EMB_LOAD_BEFORE
EMB_LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "warm-up"
load now 18601 me 64 "$WORK/now/access" >/dev/null
load base 18602 me 64 "$WORK/base/access" >/dev/null

declare -A RPS
for round in $(seq 1 "$ROUNDS"); do
  # Alternate which side goes first, so neither always has the warmer cache.
  order="now base"
  [ $((round % 2)) -eq 0 ] && order="base now"
  for side in $order; do
    port=18601
    [ "$side" = base ] && port=18602
    tokens "$side" "$port" 32
    r=$(load "$side" "$port" refresh 16 "$WORK/$side/refresh")
    m=$(load "$side" "$port" me 64 "$WORK/$side/access")
    RPS[$side,refresh]="${RPS[$side,refresh]:-} $r"
    RPS[$side,me]="${RPS[$side,me]:-} $m"
    printf '    round %d %-4s refresh %8.0f/s   /v1/me %8.0f/s\n' "$round" "$side" "$r" "$m"
  done
done

export EMB_LOAD_AFTER EMB_NOW="${RPS[now,refresh]}|${RPS[now,me]}" EMB_BASE_RPS="${RPS[base,refresh]}|${RPS[base,me]}"
EMB_LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
export EMB_COMMIT EMB_BASE_NAME=$BASE
EMB_COMMIT=$(git rev-parse --short HEAD)
python3 - "$ROOT/bench/embedded.json" <<'PY'
import json, os, sys
def side(v):
    r, m = v.split("|")
    return [float(x) for x in r.split()], [float(x) for x in m.split()]
nr, nm = side(os.environ["EMB_NOW"])
br, bm = side(os.environ["EMB_BASE_RPS"])
out = {
    "commit": os.environ["EMB_COMMIT"], "base": os.environ["EMB_BASE_NAME"],
    "load_before": os.environ["EMB_LOAD_BEFORE"], "load_after": os.environ["EMB_LOAD_AFTER"],
    "refresh_rps": {"now": nr, "base": br, "best_ratio": max(nr) / max(br)},
    "me_rps": {"now": nm, "base": bm, "best_ratio": max(nm) / max(bm)},
}
json.dump(out, open(sys.argv[1], "w"), indent=2)
print(f"    refresh: best {max(nr):.0f}/s now vs {max(br):.0f}/s at {out['base']} "
      f"({out['refresh_rps']['best_ratio']:.2f}x)")
print(f"    /v1/me:  best {max(nm):.0f}/s now vs {max(bm):.0f}/s at {out['base']} "
      f"({out['me_rps']['best_ratio']:.2f}x)")
PY
