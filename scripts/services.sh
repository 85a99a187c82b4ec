#!/usr/bin/env bash
# Shared by scripts/test.sh and scripts/bench.sh (source it): make sure the
# local PostgreSQL and Redis answer, starting them if they are installed but
# down, and check the URLs the tests and benchmarks connect with. A service
# that cannot be reached is a failure with a clear message, never a skip.

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

# Waits up to WAIT_SECS for CHECK to succeed; dies naming WHAT (and HINT).
wait_until() {
  local check=$1 what=$2 hint=$3 i
  for ((i = 0; i < WAIT_SECS; i++)); do
    if "$check"; then
      log "$what answers"
      return
    fi
    sleep 1
  done
  die "$what still does not answer after ${WAIT_SECS}s$hint"
}

ensure_postgres() {
  if pg_answers; then
    log "PostgreSQL answers on $PG_HOST:$PG_PORT"
    return
  fi
  start_postgres
  wait_until pg_answers "PostgreSQL on $PG_HOST:$PG_PORT" ""
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
  wait_until redis_answers "Redis on $REDIS_HOST:$REDIS_PORT" " (log: /var/log/redis/ci.log)"
}

# Exports RECALL_TEST_DATABASE_URL and RECALL_TEST_REDIS_URL (defaults: the
# local services) and checks that both answer with them.
ensure_test_urls() {
  export RECALL_TEST_DATABASE_URL=${RECALL_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  export RECALL_TEST_REDIS_URL=${RECALL_TEST_REDIS_URL:-redis://127.0.0.1:6379}
  # The server answering is not enough: a wrong user or password should fail
  # here, with a clear message, not in a test.
  if command -v psql >/dev/null 2>&1; then
    PGCONNECT_TIMEOUT=5 psql -X -w -q "$RECALL_TEST_DATABASE_URL" -c 'select 1' >/dev/null ||
      die "cannot connect with RECALL_TEST_DATABASE_URL (user, password or database wrong?)"
  fi
  [ "$(redis-cli -u "$RECALL_TEST_REDIS_URL" ping 2>/dev/null)" = "PONG" ] ||
    die "cannot PING with RECALL_TEST_REDIS_URL"
  log "RECALL_TEST_DATABASE_URL and RECALL_TEST_REDIS_URL answer"
}

# --- packages -----------------------------------------------------------------

# Installs Debian package PKG (apt-get) unless COMMAND is already on PATH or
# at one of the usual sbin places; dies if that does not work.
ensure_package() {
  local command=$1 pkg=$2
  if command -v "$command" >/dev/null 2>&1 || [ -x "/usr/sbin/$command" ]; then
    return
  fi
  [ "$(id -u)" = 0 ] || die "$command is missing; install Debian's $pkg package"
  log "installing $pkg (apt-get)"
  apt-get update -qq >/dev/null || log "apt-get update failed; trying the install anyway"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null ||
    die "apt-get could not install $pkg"
  command -v "$command" >/dev/null 2>&1 || [ -x "/usr/sbin/$command" ] ||
    die "$pkg installed but $command is not there"
}

# matplotlib (PyPI) for the benchmark plots.
ensure_matplotlib() {
  python3 -c 'import matplotlib' 2>/dev/null && return
  log "installing matplotlib (pip)"
  python3 -m pip install --quiet --disable-pip-version-check "matplotlib==3.9.2" ||
    die "pip could not install matplotlib"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts the debug `recall` (built here) on a free loopback port (or
# RECALL_PORT), on the
# embedded store in WORK/data, with any extra NAME=VALUE settings, and waits
# until it is ready. Sets RECALL_PID and RECALL_BASE; its log is
# WORK/recall.log. The caller stops it (stop_recall) and removes WORK.
start_recall() {
  local work=$1 port
  shift
  cargo build --quiet --bin recall
  port=${RECALL_PORT:-$(free_port)}
  RECALL_BASE="http://127.0.0.1:$port"
  env RECALL_BIND="127.0.0.1:$port" RECALL_DATA_DIR="$work/data" \
    RECALL_RATE_LIMIT_PER_MIN=100000 RUST_LOG=warn "$@" \
    "${CARGO_TARGET_DIR:-target}/debug/recall" >"$work/recall.log" 2>&1 &
  RECALL_PID=$!
  recall_up() { curl -fsS "$RECALL_BASE/readyz" >/dev/null 2>&1; }
  wait_until recall_up "Recall on $RECALL_BASE" " (log: $(tail -n 5 "$work/recall.log" 2>/dev/null))"
}

stop_recall() {
  if [ -n "${RECALL_PID:-}" ]; then
    kill "$RECALL_PID" 2>/dev/null || true
    wait "$RECALL_PID" 2>/dev/null || true
  fi
}
