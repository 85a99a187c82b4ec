#!/usr/bin/env bash
# Soak with chaos: a 3-instance fleet of the release `recall` binary on
# PostgreSQL and Redis (each instance through its own proxies) plus two
# `recall verifier` sidecars, under a mixed load of logins, refreshes,
# authenticated requests and every kind of revocation, while a seeded chaos
# driver cuts Redis, black-holes PostgreSQL, SIGKILLs and restarts, and
# SIGSTOPs one instance at a time. Then it checks the invariants from the
# clients' own records and the event log, and writes a Markdown report.
# Exits non-zero if any invariant fails. Loopback only; the load, the
# faults and the run are bounded.
#
# Usage: scripts/soak.sh [SECS]       (default: SOAK_SECS, else 600)
#
# Knobs (env): SOAK_SECS, SOAK_REPORT (default bench/SOAK.md; the short run
# inside a test suite should point it at a temp file), SOAK_SEED (replays a
# run's choices), SOAK_CLIENTS (12), SOAK_RATE (client steps/s, 800),
# SOAK_DIR (process logs and raw records as TSV; default target/soak, emptied
# first), SOAK_PROFILE (release, or debug for the short run in
# scripts/test.sh, which has the debug build already),
# RECALL_TEST_DATABASE_URL, RECALL_TEST_REDIS_URL.
set -euo pipefail

# shellcheck source=scripts/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/services.sh"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH"

SECS=${1:-${SOAK_SECS:-600}}
case "$SECS" in
  '' | *[!0-9]*) die "SECS must be a whole number of seconds, not '$SECS'" ;;
esac
[ "$SECS" -ge 20 ] || die "SECS must be at least 20 (got $SECS)"
REPORT=${SOAK_REPORT:-$ROOT/bench/SOAK.md}
if [ -n "${SOAK_DIR:-}" ]; then
  DIR=$SOAK_DIR
else
  # The default directory is ours: start it afresh.
  DIR=$ROOT/target/soak
  rm -rf "$DIR"
fi

log "checking services"
ensure_postgres
ensure_redis
ensure_test_urls

PROFILE=${SOAK_PROFILE:-release}
case "$PROFILE" in
  release) profile_flag=(--release) ;;
  debug) profile_flag=() ;;
  *) die "SOAK_PROFILE must be release or debug, not '$PROFILE'" ;;
esac
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE
log "build ($PROFILE): cargo build --bin recall --example soak"
build_started=$SECONDS
cargo build "${profile_flag[@]}" --bin recall --quiet || die "build of the recall binary failed"
cargo build "${profile_flag[@]}" --example soak --quiet || die "build of the soak example failed"
log "build: done ($((SECONDS - build_started))s)"

SOAK_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  SOAK_COMMIT="$SOAK_COMMIT (with local changes)"
fi
export SOAK_COMMIT

mkdir -p "$DIR"
args=(--secs "$SECS" --report "$REPORT" --binary "$TARGET/recall" --dir "$DIR")
[ -n "${SOAK_SEED:-}" ] && args+=(--seed "$SOAK_SEED")
[ -n "${SOAK_CLIENTS:-}" ] && args+=(--clients "$SOAK_CLIENTS")
[ -n "${SOAK_RATE:-}" ] && args+=(--rate "$SOAK_RATE")

log "soak: ${SECS}s of load with chaos; report to $REPORT"
started=$SECONDS
status=0
# SOAK_SECS and SOAK_REPORT are passed as flags; unset so they cannot disagree.
env -u SOAK_SECS -u SOAK_REPORT -u SOAK_SEED \
  "$TARGET/examples/soak" "${args[@]}" || status=$?
case "$status" in
  0) log "soak: every invariant holds ($((SECONDS - started))s); report $REPORT" ;;
  1) die "soak: an invariant failed (see $REPORT; process logs in $DIR)" ;;
  *) die "soak: the run did not complete (exit $status; process logs in $DIR)" ;;
esac
