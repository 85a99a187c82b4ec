#!/usr/bin/env bash
# A local Recall fleet on one machine: N instances sharing one PostgreSQL and
# one Redis, to try revocation across instances by hand.
#
#   scripts/cluster.sh up [N]   build, start N instances (default 3), wait until ready
#   scripts/cluster.sh status   URL, process and /readyz of each instance
#   scripts/cluster.sh down     stop them
#
# Defaults can be overridden with the env vars the service reads:
# RECALL_DATABASE_URL, RECALL_REDIS_URL, RECALL_REDIS_CHANNEL,
# RECALL_MASTER_KEY, RECALL_ADMIN_TOKEN; plus RECALL_CLUSTER_HOST (127.0.0.1),
# RECALL_CLUSTER_BASE_PORT (8081) and RECALL_CLUSTER_BIN (a recall binary to
# run instead of building target/release/recall). Every other RECALL_* var in
# your environment (TTLs, staleness, ...) reaches the instances unchanged.
set -euo pipefail

# Resolved before the cd below, so a relative path means the caller's folder.
BIN=${RECALL_CLUSTER_BIN:+$(realpath -m "$RECALL_CLUSTER_BIN")}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DIR=$ROOT/.cluster
PIDS=$DIR/pids
LOGS=$DIR/logs
HOST=${RECALL_CLUSTER_HOST:-127.0.0.1}
BASE_PORT=${RECALL_CLUSTER_BASE_PORT:-8081}
READY_SECS=60
STOP_SECS=5

log() { printf '==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() {
  printf 'cluster: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '5,7s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# Pid files, in instance order (recall-2 before recall-10).
pid_files() {
  [ -d "$PIDS" ] || return 0
  find "$PIDS" -maxdepth 1 -name 'recall-*.pid' | sort -V
}

# True when the pid is alive and still our binary (pids get reused).
is_ours() {
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ -r "/proc/$pid/cmdline" ] || return 0 # no /proc: trust kill -0
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'recall serve'
}

# Prints the HTTP status of /readyz, or 000 when nothing answers.
readyz_status() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1/readyz" || true
}

# Reads a secret file, or writes a new one from the given command.
secret() {
  local file=$1
  shift
  if [ ! -s "$file" ]; then
    (umask 077 && "$@" >"$file")
  fi
  cat "$file"
}

new_master_key() { head -c32 /dev/urandom | base64; }
new_admin_token() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }

# Creates the database of a postgres:// URL when it does not exist yet.
ensure_database() {
  local url=$1
  case "$url" in
    postgres://* | postgresql://*) ;;
    *) return 0 ;;
  esac
  command -v psql >/dev/null 2>&1 || {
    log "psql not found: assuming the database in RECALL_DATABASE_URL exists"
    return 0
  }
  local base=${url%%\?*} query=""
  [ "$base" = "$url" ] || query="?${url#*\?}"
  local db=${base##*/}
  [[ "$db" =~ ^[A-Za-z0-9_]+$ ]] || die "unexpected database name '$db' in RECALL_DATABASE_URL"
  # Connect to the maintenance database of the same server to create it.
  local admin_url="${base%/*}/postgres$query"
  local exists
  exists=$(PGCONNECT_TIMEOUT=5 psql -X -w -qtA "$admin_url" \
    -c "select 1 from pg_database where datname = '$db'") ||
    die "cannot reach PostgreSQL at ${base%/*} (is it running?)"
  if [ "$exists" != 1 ]; then
    log "creating database $db"
    psql -X -w -q "$admin_url" -c "create database \"$db\"" >/dev/null
  fi
}

stop_all() {
  local f pid alive=()
  while read -r f; do
    [ -n "$f" ] || continue
    pid=$(cat "$f")
    if is_ours "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      alive+=("$pid")
    fi
  done < <(pid_files)

  # Give them time to drain, then force the rest.
  local i
  for ((i = 0; i < STOP_SECS * 10 && ${#alive[@]} > 0; i++)); do
    sleep 0.1
    local still=()
    for pid in "${alive[@]}"; do
      kill -0 "$pid" 2>/dev/null && still+=("$pid")
    done
    alive=(${still[@]+"${still[@]}"})
  done
  for pid in ${alive[@]+"${alive[@]}"}; do
    log "pid $pid ignored TERM for ${STOP_SECS}s: KILL"
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$PIDS"/recall-*.pid "$PIDS"/recall-*.url
}

cmd_up() {
  local n=${1:-3}
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, got '$n'"

  local f
  while read -r f; do
    [ -n "$f" ] || continue
    is_ours "$(cat "$f")" && die "already running (see: $0 status); run: $0 down"
  done < <(pid_files)
  rm -f "$PIDS"/recall-*.pid "$PIDS"/recall-*.url # stale leftovers

  command -v curl >/dev/null 2>&1 || die "curl is required"
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if [ -z "$BIN" ]; then
    log "building: cargo build --release --bin recall"
    cargo build --release --bin recall
    BIN=$ROOT/target/release/recall
  fi
  [ -x "$BIN" ] || die "no executable at $BIN"

  mkdir -p "$PIDS" "$LOGS"
  export RECALL_DATABASE_URL=${RECALL_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/recall_cluster}
  export RECALL_REDIS_URL=${RECALL_REDIS_URL:-redis://127.0.0.1:6379}
  export RECALL_REDIS_CHANNEL=${RECALL_REDIS_CHANNEL:-recall:cluster}
  # Generated once and kept: a new master key could not decrypt the signing
  # keys already in the database, a new admin token would surprise scripts.
  RECALL_MASTER_KEY=${RECALL_MASTER_KEY:-$(secret "$DIR/master.key" new_master_key)}
  RECALL_ADMIN_TOKEN=${RECALL_ADMIN_TOKEN:-$(secret "$DIR/admin.token" new_admin_token)}
  export RECALL_MASTER_KEY RECALL_ADMIN_TOKEN
  export RUST_LOG=${RUST_LOG:-info}

  ensure_database "$RECALL_DATABASE_URL"
  if command -v redis-cli >/dev/null 2>&1 &&
    [ "$(redis-cli -u "$RECALL_REDIS_URL" ping 2>/dev/null)" != PONG ]; then
    log "warning: Redis does not answer at $RECALL_REDIS_URL (instances fall back to polling the log)"
  fi

  local i port url
  for ((i = 1; i <= n; i++)); do
    port=$((BASE_PORT + i - 1))
    url="http://$HOST:$port"
    mkdir -p "$DIR/data-$i"
    # Logs are appended across runs: mark where this one starts.
    printf '\n=== %s: cluster.sh up, %s ===\n' "$(date -u +%FT%TZ)" "$HOST:$port" >>"$LOGS/recall-$i.log"
    # nohup: survives the terminal closing; stdin from /dev/null so it never
    # competes for the terminal.
    # One public URL (hence one token issuer) for the whole fleet: the
    # default, http://RECALL_BIND, would differ per instance.
    RECALL_BIND="$HOST:$port" RECALL_DATA_DIR="$DIR/data-$i" \
      RECALL_PUBLIC_URL="${RECALL_PUBLIC_URL:-http://$HOST:$BASE_PORT}" \
      nohup "$BIN" serve </dev/null >>"$LOGS/recall-$i.log" 2>&1 &
    echo $! >"$PIDS/recall-$i.pid"
    echo "$url" >"$PIDS/recall-$i.url"
    log "started recall-$i (pid $!) on $url"
  done

  # Wait for every instance; stop all of them if one does not get ready, so
  # a failed `up` leaves nothing behind (the logs stay).
  local deadline=$((SECONDS + READY_SECS)) pid
  for ((i = 1; i <= n; i++)); do
    url=$(cat "$PIDS/recall-$i.url")
    pid=$(cat "$PIDS/recall-$i.pid")
    until [ "$(readyz_status "$url")" = 200 ]; do
      if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
        local why="exited"
        kill -0 "$pid" 2>/dev/null && why="not ready after ${READY_SECS}s (readyz: $(curl -s --max-time 2 "$url/readyz" || echo 'no answer'))"
        printf 'cluster: recall-%d %s; last lines of %s:\n' "$i" "$why" "$LOGS/recall-$i.log" >&2
        tail -n 30 "$LOGS/recall-$i.log" >&2 || true
        stop_all
        exit 1
      fi
      sleep 0.5
    done
  done

  log "cluster of $n ready"
  for ((i = 1; i <= n; i++)); do
    echo "  recall-$i  $(cat "$PIDS/recall-$i.url")"
  done
  echo "  logs:        $LOGS"
  echo "  admin token: $RECALL_ADMIN_TOKEN"
  echo "  stop with:   $0 down"
}

cmd_down() {
  if [ -z "$(pid_files)" ]; then
    log "nothing running"
    return
  fi
  stop_all
  log "stopped"
}

cmd_status() {
  local f name url pid state ready any=0
  while read -r f; do
    [ -n "$f" ] || continue
    any=1
    name=$(basename "$f" .pid)
    pid=$(cat "$f")
    url=$(cat "$PIDS/$name.url" 2>/dev/null || echo "?")
    if is_ours "$pid"; then state="alive (pid $pid)"; else state="dead (pid $pid)"; fi
    ready=$(readyz_status "$url")
    [ "$ready" = 000 ] && ready="no answer"
    printf '%-10s %-24s %-20s readyz: %s\n' "$name" "$url" "$state" "$ready"
  done < <(pid_files)
  [ "$any" = 1 ] || echo "no instances (start with: $0 up [N])"
}

case "${1:-}" in
  up)
    shift
    [ $# -le 1 ] || usage
    cmd_up "$@"
    ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) usage ;;
esac
