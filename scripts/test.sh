#!/usr/bin/env bash
# The one test command (README.md and .ci/run call it): make sure PostgreSQL
# and Redis answer, then fmt, clippy and the whole test suite. The fleet tests
# need both services, so a missing service is a failure, never a skip.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
WAIT_SECS=30

log() { printf '==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() {
  printf '==> [%s] FAILED: %s\n' "$(date +%H:%M:%S)" "$*" >&2
  exit 1
}

# --- PostgreSQL ---------------------------------------------------------------

pg_answers() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT"
  else
    # -w: never prompt for a password, a prompt would hang CI.
    PGCONNECT_TIMEOUT=3 psql -X -w -q -h "$PG_HOST" -p "$PG_PORT" -U postgres \
      -c 'select 1' >/dev/null 2>&1
  fi
}

start_postgres() {
  command -v pg_ctlcluster >/dev/null 2>&1 ||
    die "PostgreSQL does not answer on $PG_HOST:$PG_PORT and pg_ctlcluster is missing; start it yourself"
  local version
  # The newest installed cluster, if several are.
  version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
  [ -n "$version" ] || die "PostgreSQL does not answer on $PG_HOST:$PG_PORT and /etc/postgresql holds no cluster"
  log "starting PostgreSQL $version (cluster main)"
  # Not fatal by itself: the cluster may be starting already; the wait decides.
  pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
    log "pg_ctlcluster returned non-zero; waiting anyway"
}

ensure_postgres() {
  if pg_answers; then
    log "PostgreSQL answers on $PG_HOST:$PG_PORT"
    return
  fi
  start_postgres
  local i
  for ((i = 0; i < WAIT_SECS; i++)); do
    if pg_answers; then
      log "PostgreSQL answers on $PG_HOST:$PG_PORT"
      return
    fi
    sleep 1
  done
  die "PostgreSQL still does not answer on $PG_HOST:$PG_PORT after ${WAIT_SECS}s"
}

# --- Redis --------------------------------------------------------------------

redis_answers() {
  [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
}

ensure_redis() {
  command -v redis-cli >/dev/null 2>&1 || die "redis-cli is not installed"
  if redis_answers; then
    log "Redis answers on $REDIS_HOST:$REDIS_PORT"
    return
  fi
  command -v redis-server >/dev/null 2>&1 ||
    die "Redis does not answer on $REDIS_HOST:$REDIS_PORT and redis-server is missing; start it yourself"
  log "starting redis-server on $REDIS_HOST:$REDIS_PORT"
  mkdir -p /var/lib/redis /var/log/redis
  # Pub/sub only: no persistence needed.
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
    --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log ||
    log "redis-server returned non-zero; waiting anyway"
  local i
  for ((i = 0; i < WAIT_SECS; i++)); do
    if redis_answers; then
      log "Redis answers on $REDIS_HOST:$REDIS_PORT"
      return
    fi
    sleep 1
  done
  die "Redis still does not answer on $REDIS_HOST:$REDIS_PORT after ${WAIT_SECS}s (log: /var/log/redis/ci.log)"
}

# --- steps --------------------------------------------------------------------

# Runs one step under a banner; stops the script with the step's exit code.
step() {
  local name=$1
  shift
  local started=$SECONDS rc=0
  log "$name: $*"
  "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    printf '==> [%s] FAILED: %s (exit %d after %ds)\n' \
      "$(date +%H:%M:%S)" "$name" "$rc" $((SECONDS - started)) >&2
    exit "$rc"
  fi
  log "$name: ok ($((SECONDS - started))s)"
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# CI shells may not have run rustup's profile script.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH"

log "checking services"
ensure_postgres
ensure_redis

export RECALL_TEST_DATABASE_URL=${RECALL_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export RECALL_TEST_REDIS_URL=${RECALL_TEST_REDIS_URL:-redis://127.0.0.1:6379}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

# The server answering is not enough: the tests connect with these URLs, so a
# wrong user or password should fail here, with a clear message, not in a test.
if command -v psql >/dev/null 2>&1; then
  PGCONNECT_TIMEOUT=5 psql -X -w -q "$RECALL_TEST_DATABASE_URL" -c 'select 1' >/dev/null ||
    die "cannot connect with RECALL_TEST_DATABASE_URL (user, password or database wrong?)"
fi
[ "$(redis-cli -u "$RECALL_TEST_REDIS_URL" ping 2>/dev/null)" = "PONG" ] ||
  die "cannot PING with RECALL_TEST_REDIS_URL"
log "RECALL_TEST_DATABASE_URL and RECALL_TEST_REDIS_URL answer"

# A PostgreSQL with ssl = on and a Redis with a TLS port, certificates from a
# throwaway CA made here: the TLS tests (tests/api/trust.rs) need them, so a
# failure to start them fails the run.
tls_exports=$(bash scripts/tls-services.sh start) ||
  die "could not start the TLS PostgreSQL and Redis (scripts/tls-services.sh)"
eval "$tls_exports"
log "TLS PostgreSQL and Redis answer ($RECALL_TEST_TLS_DATABASE_URL, $RECALL_TEST_TLS_REDIS_URL)"

total_started=$SECONDS
step "fmt" cargo fmt --all --check
step "clippy" cargo clippy --all-targets -- -D warnings
step "test" cargo test --all-targets -- --test-threads=4
log "all checks passed ($((SECONDS - total_started))s)"
