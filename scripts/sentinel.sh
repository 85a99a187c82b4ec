#!/usr/bin/env bash
# A Redis failover under a live fleet (tests/api/sentinel.rs): starts on
# 127.0.0.1 a Redis primary and a replica (no persistence) and three
# sentinels (quorum 2, down after 1 s) in a temporary directory, waits
# until the sentinels see the primary, the replica and each other, then
# runs the sentinel tests, which kill the primary and watch the fleet
# follow the promoted replica. Stops everything it started on exit. A
# missing or failed part is a failure with a clear message, never a skip.
#
#   scripts/sentinel.sh       # as scripts/test.sh runs it
#
# Ports are free ones picked at start (RECALL_SENTINEL_BASE_PORT=N uses
# N..N+4 instead: primary, replica, three sentinels).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh

SERVICE=recall-test
QUORUM=2
DOWN_AFTER_MS=1000
FAILOVER_TIMEOUT_MS=5000

command -v redis-server >/dev/null 2>&1 || die "redis-server is not installed (Debian's redis-server package)"
command -v redis-cli >/dev/null 2>&1 || die "redis-cli is not installed (Debian's redis-tools package)"
ensure_package redis-sentinel redis-sentinel
SENTINEL_BIN=$(command -v redis-sentinel || echo /usr/sbin/redis-sentinel)

work=$(mktemp -d /tmp/recall-sentinel.XXXXXX)
PIDS=()
# Stops what this script started (by pid) and, after a failure, shows the
# last lines of each server's log.
cleanup() {
  local rc=$? f
  if [ "${#PIDS[@]}" -gt 0 ]; then
    kill "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ]; then
    for f in "$work"/*.log; do
      [ -s "$f" ] && log "last lines of ${f##*/}:" && tail -n 15 "$f" >&2
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${RECALL_SENTINEL_BASE_PORT:-}" ]; then
  base=$RECALL_SENTINEL_BASE_PORT
  PRIMARY_PORT=$base REPLICA_PORT=$((base + 1))
  SENTINEL_PORTS=($((base + 2)) $((base + 3)) $((base + 4)))
else
  PRIMARY_PORT=$(free_port) REPLICA_PORT=$(free_port)
  SENTINEL_PORTS=("$(free_port)" "$(free_port)" "$(free_port)")
fi
for port in "$PRIMARY_PORT" "$REPLICA_PORT" "${SENTINEL_PORTS[@]}"; do
  if redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then
    die "something already answers on 127.0.0.1:$port; set RECALL_SENTINEL_BASE_PORT to free ports"
  fi
done

# Runs a server in the background (not daemonized: its pid is $! and the
# trap stops it), its output in WORK/NAME.log.
start_server() {
  local name=$1
  shift
  "$@" >"$work/$name.log" 2>&1 &
  PIDS+=($!)
  eval "${name^^}_PID=$!"
}

redis_opts=(--bind 127.0.0.1 --save "" --appendonly no --daemonize no)
log "starting the Redis primary on 127.0.0.1:$PRIMARY_PORT"
mkdir -p "$work/primary" "$work/replica"
start_server primary redis-server --port "$PRIMARY_PORT" --dir "$work/primary" "${redis_opts[@]}"
log "starting the Redis replica on 127.0.0.1:$REPLICA_PORT"
start_server replica redis-server --port "$REPLICA_PORT" --dir "$work/replica" "${redis_opts[@]}" \
  --replicaof 127.0.0.1 "$PRIMARY_PORT"

# Every process we started is still running.
all_alive() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || die "a Redis or sentinel process (pid $pid) exited right after starting"
  done
}

replica_synced() {
  all_alive
  redis-cli -h 127.0.0.1 -p "$REPLICA_PORT" info replication 2>/dev/null | grep -q '^master_link_status:up'
}
wait_until replica_synced "the replica on 127.0.0.1:$REPLICA_PORT (in sync with the primary)" ""

# Started once the replica is in sync, so their first look at the primary
# finds it.
for i in 0 1 2; do
  port=${SENTINEL_PORTS[$i]}
  mkdir -p "$work/sentinel$i"
  # Sentinel rewrites its configuration file, so each has its own copy.
  cat >"$work/sentinel$i/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
daemonize no
dir $work/sentinel$i
sentinel monitor $SERVICE 127.0.0.1 $PRIMARY_PORT $QUORUM
sentinel down-after-milliseconds $SERVICE $DOWN_AFTER_MS
sentinel failover-timeout $SERVICE $FAILOVER_TIMEOUT_MS
sentinel parallel-syncs $SERVICE 1
EOF
  log "starting sentinel $i on 127.0.0.1:$port"
  start_server "sentinel$i" "$SENTINEL_BIN" "$work/sentinel$i/sentinel.conf"
done

hosts=""
for port in "${SENTINEL_PORTS[@]}"; do
  hosts+="${hosts:+,}127.0.0.1:$port"
done

# A sentinel is ready when it names the primary and has found the replica
# and the two other sentinels (a failover needs all three).
sentinel_field() {
  redis-cli -h 127.0.0.1 -p "$1" sentinel master "$SERVICE" 2>/dev/null |
    awk -v key="$2" 'found { print; exit } $0 == key { found = 1 }'
}
sentinels_ready() {
  local port
  all_alive
  for port in "${SENTINEL_PORTS[@]}"; do
    [ "$(sentinel_field "$port" port)" = "$PRIMARY_PORT" ] || return 1
    [ "$(sentinel_field "$port" num-slaves)" = 1 ] || return 1
    [ "$(sentinel_field "$port" num-other-sentinels)" = 2 ] || return 1
  done
}
wait_until sentinels_ready "Sentinel on $hosts (the primary, the replica and each other seen)" ""

export RECALL_TEST_SENTINEL_URL="redis+sentinel://$hosts/$SERVICE"
export RECALL_TEST_SENTINEL_PRIMARY_PORT=$PRIMARY_PORT
export RECALL_TEST_SENTINEL_PRIMARY_PID=$PRIMARY_PID
export RECALL_TEST_SENTINEL_REPLICA_PORT=$REPLICA_PORT
log "RECALL_TEST_SENTINEL_URL=$RECALL_TEST_SENTINEL_URL (primary pid $PRIMARY_PID)"

# The database per test comes from the local PostgreSQL.
ensure_postgres
export RECALL_TEST_DATABASE_URL=${RECALL_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}

log "running the sentinel tests (the primary is killed in them)"
out="$work/cargo-test.out"
rc=0
cargo test --test api -- --ignored --exact sentinel::a_fleet_follows_a_redis_failover --nocapture 2>&1 |
  tee "$out" || rc=$?
[ "$rc" -eq 0 ] || die "the sentinel test failed (exit $rc)"
# A filter that matched nothing also exits 0.
grep -q '^test result: ok\. [1-9]' "$out" || die "no sentinel test ran (did its name change?)"
log "sentinel: the fleet followed the failover"
