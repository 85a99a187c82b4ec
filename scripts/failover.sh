#!/usr/bin/env bash
# PostgreSQL failover under load, with two real clusters on this machine: a
# primary and a synchronous streaming standby (pg_basebackup -R), made in a
# temp dir and run as user postgres on loopback ports of their own. A fleet
# of three release `recall serve` processes reaches them through one
# multi-host URL (target_session_attrs=read-write) under a steady load;
# mid-run the driver (examples/failover) stops the primary with
# `pg_ctl stop -m immediate` and promotes the standby. Then it checks that
# every acknowledged write is in the new primary's log, that the sequence
# has no hole or repeat, that no revoked token was ever accepted, that the
# outage answered 503 (never 500, never a 2xx for a lost write), and how
# many seconds after the promotion each instance served writes again.
# Everything it made is removed on exit. Exits non-zero on any failure;
# never skips.
#
# Usage: scripts/failover.sh [SECS]   (seconds of load; default FAILOVER_SECS, else 30)
#
# Knobs (env): FAILOVER_SECS; FAILOVER_JSON (the driver's JSON report;
# default target/failover/failover.json, where scripts/bench.sh can read
# the failover seconds); FAILOVER_AT (seconds of load before the primary
# is stopped; default a third of SECS); FAILOVER_GAP_MS (primary down
# before the promotion starts, 2000); FAILOVER_BOUND_SECS (the most
# seconds from promotion to writes on every instance, 15);
# FAILOVER_CLIENTS (12); FAILOVER_PROFILE (release, or debug);
# FAILOVER_STOP_MODE: how the primary goes (immediate, the default: it
# vanishes as in a crash; fast: its backends end their sessions with an
# admin-shutdown error first; readonly: it stays up but turns read-only,
# as a switchover does before promoting, so pooled connections to it stay
# open and every write on them is refused);
# FAILOVER_PRIMARY_PORT (5441), FAILOVER_STANDBY_PORT (5442);
# FAILOVER_KEEP=1 keeps the temp dir (cluster and process logs);
# RECALL_TEST_REDIS_URL (the bus; default the local Redis).
set -euo pipefail

# shellcheck source=scripts/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/services.sh"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH"

SECS=${1:-${FAILOVER_SECS:-30}}
case "$SECS" in
  '' | *[!0-9]*) die "SECS must be a whole number of seconds, not '$SECS'" ;;
esac
[ "$SECS" -ge 12 ] || die "SECS must be at least 12 (got $SECS)"
AT=${FAILOVER_AT:-$((SECS / 3))}
GAP_MS=${FAILOVER_GAP_MS:-2000}
BOUND=${FAILOVER_BOUND_SECS:-15}
CLIENTS=${FAILOVER_CLIENTS:-12}
STOP_MODE=${FAILOVER_STOP_MODE:-immediate}
case "$STOP_MODE" in
  immediate | fast | readonly) ;;
  *) die "FAILOVER_STOP_MODE must be immediate, fast or readonly, not '$STOP_MODE'" ;;
esac
P1=${FAILOVER_PRIMARY_PORT:-5441}
P2=${FAILOVER_STANDBY_PORT:-5442}
JSON=${FAILOVER_JSON:-$ROOT/target/failover/failover.json}
for n in "$AT" "$GAP_MS" "$BOUND" "$CLIENTS" "$P1" "$P2"; do
  case "$n" in '' | *[!0-9]*) die "every FAILOVER_* number must be a whole number (got '$n')" ;; esac
done
[ "$AT" -ge 3 ] && [ "$AT" -lt "$SECS" ] || die "FAILOVER_AT must be at least 3 and below SECS ($SECS), not $AT"
[ "$P1" != "$P2" ] || die "the primary and the standby need two ports"
for p in "$P1" "$P2"; do
  # The machine's own clusters (5432, and 5433 for the TLS tests) are never ours to stop.
  case "$p" in 5432 | 5433) die "port $p belongs to another PostgreSQL; pick others" ;; esac
done

# --- PostgreSQL binaries and user ----------------------------------------------

PG_BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
for b in initdb pg_ctl pg_basebackup psql pg_isready; do
  [ -n "$PG_BIN" ] && [ -x "$PG_BIN/$b" ] || die "no $b under /usr/lib/postgresql/*/bin"
done

# initdb and postgres refuse to run as root: as user postgres then, from /
# (postgres may not enter the caller's working directory).
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || die "there is no postgres OS user to run PostgreSQL as"
  PG_USER=postgres
  PG_GROUP=$(id -gn postgres)
  AS_PG="runuser -u postgres --"
else
  PG_USER=$(id -un)
  PG_GROUP=$(id -gn)
  AS_PG=""
fi
as_pg() { (cd / && $AS_PG "$@"); }

# Runs a command that leaves a daemon behind with every fd above stderr
# closed, so the daemon holds no pipe of a caller open.
detached() {
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
    "$@"
  )
}

psql_at() {
  PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -w -A -t -q -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"
}

# --- the temp dir and its cleanup ----------------------------------------------

WORK=$(mktemp -d /tmp/recall-failover.XXXXXX)
chmod 0755 "$WORK"
PRIMARY=$WORK/primary
STANDBY=$WORK/standby
RUN=$WORK/run
LOGS=$WORK/logs
install -d -o "$PG_USER" -g "$PG_GROUP" -m 0755 "$RUN"
mkdir -p "$LOGS"

stop_cluster() {
  local data=$1
  [ -f "$data/postmaster.pid" ] || return 0
  as_pg "$PG_BIN/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
    log "pg_ctl stop of $data failed"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_cluster "$STANDBY"
  stop_cluster "$PRIMARY"
  if [ "$rc" -ne 0 ] || [ "${FAILOVER_KEEP:-0}" = 1 ]; then
    # The logs say why; the cluster files are of no further use.
    for f in "$WORK"/*.log; do
      [ -f "$f" ] || continue
      log "tail of $f:"
      tail -n 15 "$f" >&2 || true
    done
  fi
  if [ "${FAILOVER_KEEP:-0}" = 1 ]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for p in "$P1" "$P2"; do
  if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$p"; then
    die "something already answers on 127.0.0.1:$p (a failover.sh left behind?); not touching it"
  fi
done

# --- build ------------------------------------------------------------------------

PROFILE=${FAILOVER_PROFILE:-release}
case "$PROFILE" in
  release) profile_flag=(--release) ;;
  debug) profile_flag=() ;;
  *) die "FAILOVER_PROFILE must be release or debug, not '$PROFILE'" ;;
esac
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE
log "build ($PROFILE): cargo build --bin recall --example failover"
build_started=$SECONDS
cargo build "${profile_flag[@]}" --bin recall --quiet || die "build of the recall binary failed"
cargo build "${profile_flag[@]}" --example failover --quiet || die "build of the failover example failed"
log "build: done ($((SECONDS - build_started))s)"

REDIS=${RECALL_TEST_REDIS_URL:-redis://127.0.0.1:6379}
[ "$(timeout 5 redis-cli -u "$REDIS" ping 2>/dev/null)" = "PONG" ] || {
  log "Redis does not answer at $REDIS; starting the local one"
  ensure_redis
}

# --- the primary --------------------------------------------------------------------

# write_conf DATA PORT EXTRA: our settings in their own file, included last.
write_conf() {
  cat >"$1/recall_failover.conf" <<EOF
# Written by scripts/failover.sh. Test only: trust auth on loopback.
listen_addresses = '127.0.0.1'
port = $2
unix_socket_directories = '$RUN'
shared_buffers = 32MB
max_connections = 100
wal_level = replica
max_wal_senders = 5
wal_keep_size = 64MB
hot_standby = on
synchronous_commit = on
fsync = on
$3
EOF
  chown "$PG_USER:$PG_GROUP" "$1/recall_failover.conf"
}

start_cluster() {
  local data=$1 port=$2 log_file=$3
  install -o "$PG_USER" -g "$PG_GROUP" -m 0644 /dev/null "$log_file"
  detached as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$log_file" -w -t 30 start >/dev/null ||
    die "PostgreSQL on 127.0.0.1:$port did not start (log: $log_file)"
}

log "initdb primary ($PRIMARY, port $P1)"
install -d -o "$PG_USER" -g "$PG_GROUP" -m 0700 "$PRIMARY"
as_pg "$PG_BIN/initdb" -D "$PRIMARY" --auth=trust -U postgres -E UTF8 --no-locale >/dev/null ||
  die "initdb of the primary failed"
echo "include_if_exists = 'recall_failover.conf'" >>"$PRIMARY/postgresql.conf"
cat >"$PRIMARY/pg_hba.conf" <<'EOF'
# Written by scripts/failover.sh. Test only: trust everything on loopback.
local   all         all                trust
host    all         all  127.0.0.1/32  trust
host    replication all  127.0.0.1/32  trust
EOF
chown "$PG_USER:$PG_GROUP" "$PRIMARY/pg_hba.conf"
# A commit answers only once standby1 has flushed it: what the primary
# acknowledged survives its loss.
write_conf "$PRIMARY" "$P1" "synchronous_standby_names = 'FIRST 1 (standby1)'"
log "starting the primary on 127.0.0.1:$P1"
start_cluster "$PRIMARY" "$P1" "$WORK/primary.log"

# --- the standby --------------------------------------------------------------------

log "pg_basebackup -R: the standby ($STANDBY, port $P2)"
install -d -o "$PG_USER" -g "$PG_GROUP" -m 0700 "$STANDBY"
as_pg timeout 120 "$PG_BIN/pg_basebackup" \
  -d "host=127.0.0.1 port=$P1 user=postgres application_name=standby1" \
  -D "$STANDBY" -R -X stream -c fast >/dev/null ||
  die "pg_basebackup from 127.0.0.1:$P1 failed"
# The streaming connection names itself standby1, the name the primary
# waits for (later lines of postgresql.auto.conf win).
echo "primary_conninfo = 'host=127.0.0.1 port=$P1 user=postgres application_name=standby1'" \
  >>"$STANDBY/postgresql.auto.conf"
# Once promoted it has no standby of its own: it must not wait for one.
write_conf "$STANDBY" "$P2" "synchronous_standby_names = ''"
[ -f "$STANDBY/standby.signal" ] || die "pg_basebackup -R wrote no standby.signal"
log "starting the standby on 127.0.0.1:$P2"
start_cluster "$STANDBY" "$P2" "$WORK/standby.log"

log "waiting for standby1 to stream synchronously"
state=""
for ((i = 0; i < 30; i++)); do
  state=$(psql_at "$P1" "select application_name || ' ' || state || ' ' || sync_state from pg_stat_replication" 2>/dev/null || true)
  [ "$state" = "standby1 streaming sync" ] && break
  sleep 1
done
[ "$state" = "standby1 streaming sync" ] ||
  die "the standby is not a synchronous streaming standby after 30s (pg_stat_replication: '${state:-no row}')"
[ "$(psql_at "$P2" 'select pg_is_in_recovery()')" = "t" ] || die "the standby is not in recovery"
log "standby1 streams, sync_state = sync"

# --- the run -----------------------------------------------------------------------------

if [ "$STOP_MODE" = readonly ]; then
  STOP_CMD="$PG_BIN/psql -X -w -q -h 127.0.0.1 -p $P1 -U postgres -d postgres"
  STOP_CMD+=" -c 'ALTER SYSTEM SET default_transaction_read_only = on' -c 'SELECT pg_reload_conf()'"
else
  STOP_CMD="cd / && $AS_PG $PG_BIN/pg_ctl -D $PRIMARY -m $STOP_MODE -w -t 30 stop"
fi
PROMOTE_CMD="cd / && $AS_PG $PG_BIN/pg_ctl -D $STANDBY -w -t 30 promote"
mkdir -p "$(dirname "$JSON")"
log "failover: ${SECS}s of load, primary stopped (-m $STOP_MODE) at +${AT}s, promotion ${GAP_MS}ms later; JSON to $JSON"
started=$SECONDS
status=0
"$TARGET/examples/failover" \
  --binary "$TARGET/recall" --dir "$LOGS" --json "$JSON" \
  --pg "postgres://postgres@127.0.0.1:$P1/postgres" \
  --standby "postgres://postgres@127.0.0.1:$P2/postgres" \
  --redis "$REDIS" \
  --secs "$SECS" --failover-at "$AT" --gap-ms "$GAP_MS" --bound-secs "$BOUND" \
  --clients "$CLIENTS" \
  --stop-cmd "$STOP_CMD" --promote-cmd "$PROMOTE_CMD" || status=$?
case "$status" in
  0) log "failover: every check holds ($((SECONDS - started))s); report $JSON" ;;
  1)
    for f in "$LOGS"/*.log; do
      [ -f "$f" ] || continue
      log "tail of $f:"
      tail -n 10 "$f" >&2 || true
    done
    die "failover: a check failed (report $JSON)"
    ;;
  *) die "failover: the run did not complete (exit $status)" ;;
esac
