#!/usr/bin/env bash
# Throwaway TLS-enabled PostgreSQL and Redis for the TLS tests.
#
#   scripts/tls-services.sh start   # create certs if missing, start both, verify over TLS
#   scripts/tls-services.sh stop    # stop both (no error if they are not running)
#   scripts/tls-services.sh env     # only print the export lines
#
# `start` and `env` print nothing but `export` lines on stdout, so a caller can
# run `eval "$(scripts/tls-services.sh start)"`; progress goes to stderr.
#
# Everything lives in ${RECALL_TLS_DIR:-/tmp/recall-tls}:
#   ca.pem/ca.key             the CA the tests trust
#   server.pem/server.key     signed by ca.pem, valid for DNS:localhost and IP:127.0.0.1
#   wrong-ca.pem/wrong-ca.key an unrelated CA that signed nothing: a client that
#                             trusts only it must refuse both servers
#   pg/data, pg/run, pg/postgres.log   the PostgreSQL cluster (port 5433)
#   redis.log, redis.pid               the Redis server (TLS port 6380, no plain port)
#
# Test only: trust auth, fsync off, no persistence. Never point it at real data.
set -euo pipefail

TLS_DIR=${RECALL_TLS_DIR:-/tmp/recall-tls}
PG_PORT=${RECALL_TLS_PG_PORT:-5433}
REDIS_PORT=${RECALL_TLS_REDIS_PORT:-6380}
WAIT_SECS=30
CERT_DAYS=30
CA_DAYS=365

# Absolute, because commands run as postgres start from / (see as_pg).
TLS_DIR=$(realpath -m -- "$TLS_DIR")
PG_ROOT=$TLS_DIR/pg
PG_DATA=$PG_ROOT/data
PG_RUN=$PG_ROOT/run
PG_LOG=$PG_ROOT/postgres.log
REDIS_LOG=$TLS_DIR/redis.log
REDIS_PID=$TLS_DIR/redis.pid

log() { printf '==> [tls] %s\n' "$*" >&2; }
die() {
  printf '==> [tls] FAILED: %s\n' "$*" >&2
  exit 1
}

# Single-quotes a value for the export lines, so any path survives eval.
shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

print_env() {
  printf 'export RECALL_TEST_TLS_DATABASE_URL=%s\n' "$(shquote "postgres://postgres@localhost:$PG_PORT/postgres")"
  printf 'export RECALL_TEST_TLS_REDIS_URL=%s\n' "$(shquote "rediss://localhost:$REDIS_PORT")"
  printf 'export RECALL_TEST_TLS_CA_FILE=%s\n' "$(shquote "$TLS_DIR/ca.pem")"
  printf 'export RECALL_TEST_TLS_WRONG_CA_FILE=%s\n' "$(shquote "$TLS_DIR/wrong-ca.pem")"
}

# Runs a command that leaves a daemon behind, with every fd above stderr
# closed: a daemon that inherits our lock (fd 9) would hold it forever, one
# that inherits the caller's stdout (fd 3) would keep `eval "$(...)"` waiting.
detached() {
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
    "$@" # not exec: it may be a function (as_pg)
  )
}

# --- certificates -------------------------------------------------------------

ensure_openssl() {
  command -v openssl >/dev/null 2>&1 && return
  log "openssl is missing; installing it"
  # Try without `apt-get update` first: the package lists are usually there.
  apt-get install -y openssl || { apt-get update && apt-get install -y openssl; } ||
    die "could not install openssl"
}

# An explicit config, so the distribution's openssl.cnf (default extensions,
# policies) cannot change what we generate. rustls/webpki insist on x509 v3
# with these extensions: CA certs need basicConstraints CA:TRUE + keyCertSign,
# leaf certs need a SAN (the CN is ignored) and serverAuth.
write_openssl_cnf() {
  cat >"$1" <<'EOF'
[req]
distinguished_name = dn
prompt = no

[dn]

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
}

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# Self-signed CA: new_ca <name> <subject CN>.
new_ca() {
  new_key "$TLS_DIR/$1.key"
  openssl req -x509 -new -config "$CNF" -extensions ca_ext -sha256 -days "$CA_DAYS" \
    -key "$TLS_DIR/$1.key" -subj "/CN=$2" -out "$TLS_DIR/$1.pem"
}

# A file is usable if it exists and does not expire within a day.
cert_ok() { [ -s "$1" ] && openssl x509 -in "$1" -noout -checkend 86400 >/dev/null 2>&1; }

# Sets CERTS_CHANGED=1 when the server certificate (or its CA) is new, so the
# servers get restarted: they only read certificates at startup.
ensure_certs() {
  ensure_openssl
  CERTS_CHANGED=0
  # Keys must never be readable by others; restored before returning.
  local old_umask
  old_umask=$(umask)
  umask 077
  CNF=$(mktemp)
  write_openssl_cnf "$CNF"

  if ! cert_ok "$TLS_DIR/ca.pem" || [ ! -s "$TLS_DIR/ca.key" ]; then
    log "creating CA $TLS_DIR/ca.pem"
    new_ca ca "Recall test CA"
    CERTS_CHANGED=1
  fi

  # Also regenerate when the server cert no longer chains to ca.pem (CA was
  # replaced) or is about to expire.
  if [ "$CERTS_CHANGED" = 1 ] || ! cert_ok "$TLS_DIR/server.pem" || [ ! -s "$TLS_DIR/server.key" ] ||
    ! openssl verify -CAfile "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" >/dev/null 2>&1; then
    log "creating server certificate $TLS_DIR/server.pem (DNS:localhost, IP:127.0.0.1)"
    new_key "$TLS_DIR/server.key"
    openssl req -new -config "$CNF" -key "$TLS_DIR/server.key" -subj "/CN=localhost" \
      -out "$TLS_DIR/server.csr"
    # x509 -req (not req -x509) so the CA signs it; -extfile makes it v3.
    openssl x509 -req -sha256 -days "$CERT_DAYS" -in "$TLS_DIR/server.csr" \
      -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
      -CAcreateserial -CAserial "$TLS_DIR/ca.srl" \
      -extfile "$CNF" -extensions server_ext -out "$TLS_DIR/server.pem" 2>/dev/null
    rm -f "$TLS_DIR/server.csr"
    CERTS_CHANGED=1
  fi

  if ! cert_ok "$TLS_DIR/wrong-ca.pem"; then
    log "creating unrelated CA $TLS_DIR/wrong-ca.pem"
    new_ca wrong-ca "Recall WRONG test CA (signed nothing)"
  fi

  rm -f "$CNF"
  umask "$old_umask"
  # Public parts readable, so tests running as another user can load them.
  chmod 0644 "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" "$TLS_DIR/wrong-ca.pem"

  # The wrong-CA tests only mean something if the wrong CA really cannot
  # verify the server certificate.
  openssl verify -CAfile "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" >/dev/null 2>&1 ||
    die "server.pem does not verify against ca.pem"
  if openssl verify -CAfile "$TLS_DIR/wrong-ca.pem" "$TLS_DIR/server.pem" >/dev/null 2>&1; then
    die "server.pem verifies against wrong-ca.pem; delete $TLS_DIR and retry"
  fi
}

# --- PostgreSQL ---------------------------------------------------------------

find_pg_bin() {
  local dir
  # The newest installed major version, if several are.
  dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$dir" ] || [ ! -x "$dir/initdb" ] || [ ! -x "$dir/pg_ctl" ]; then
    die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
  fi
  PG_BIN=$dir
}

# initdb and postgres refuse to run as root. From /, because postgres may
# not be allowed into the caller's working directory.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

# Who owns the cluster files: postgres when we are root, else ourselves.
set_pg_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    PG_USER=postgres
    PG_GROUP=$(id -gn postgres) || die "there is no postgres OS user to run PostgreSQL as"
  else
    PG_USER=$(id -un)
    PG_GROUP=$(id -gn)
  fi
}

# Checks the real thing the tests do: TLS with chain and hostname checks.
pg_tls_check() {
  local ca=$1 out
  out=$(PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -w -A -t -q \
    "postgres://postgres@localhost:$PG_PORT/postgres?sslmode=verify-full&sslrootcert=$ca" \
    -c 'select ssl from pg_stat_ssl where pid = pg_backend_pid()' 2>&1) || {
    PG_LAST_ERROR=$out
    return 1
  }
  [ "$out" = "t" ] || {
    PG_LAST_ERROR="connected, but pg_stat_ssl says ssl=$out"
    return 1
  }
}

pg_cluster_running() {
  [ -f "$PG_DATA/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

start_postgres() {
  set_pg_owner
  if pg_cluster_running; then
    log "PostgreSQL ($PG_DATA) is already running"
    return
  fi
  if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    # Not ours, or started by hand; the TLS check below decides if it will do.
    log "something already answers on 127.0.0.1:$PG_PORT; not starting another PostgreSQL"
    return
  fi

  install -d -o "$PG_USER" -g "$PG_GROUP" -m 0755 "$PG_ROOT"
  install -d -o "$PG_USER" -g "$PG_GROUP" -m 0755 "$PG_RUN"
  as_pg test -w "$PG_ROOT" ||
    die "user $PG_USER cannot write $PG_ROOT (is a parent of $TLS_DIR closed to it?)"

  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "initdb $PG_DATA ($PG_BIN)"
    rm -rf "$PG_DATA"
    install -d -o "$PG_USER" -g "$PG_GROUP" -m 0700 "$PG_DATA"
    # --no-locale: the machine's locale may not be generated; tests don't care.
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" --auth=trust -U postgres -E UTF8 --no-locale >/dev/null ||
      die "initdb failed"
    # Our settings live in their own file, rewritten on every start.
    echo "include_if_exists = 'recall_tls.conf'" >>"$PG_DATA/postgresql.conf"
  fi

  # Copies, because postgres refuses a key it does not own or that others
  # can read, and ours belong to the caller.
  install -o "$PG_USER" -g "$PG_GROUP" -m 0644 "$TLS_DIR/server.pem" "$PG_DATA/server.crt"
  install -o "$PG_USER" -g "$PG_GROUP" -m 0600 "$TLS_DIR/server.key" "$PG_DATA/server.key"

  # Own socket directory: /var/run/postgresql belongs to the main cluster.
  cat >"$PG_DATA/recall_tls.conf" <<EOF
# Written by scripts/tls-services.sh; rewritten on every start.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_RUN'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
shared_buffers = 16MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  chown "$PG_USER:$PG_GROUP" "$PG_DATA/recall_tls.conf"

  # The plain `host` line means the server does not force TLS: a client that
  # silently falls back to plaintext still gets in. Tests that must prove TLS
  # was used should look at pg_stat_ssl, as pg_tls_check does.
  cat >"$PG_DATA/pg_hba.conf" <<'EOF'
# Written by scripts/tls-services.sh. Test only: trust everything on loopback.
local   all all                trust
hostssl all all 127.0.0.1/32   trust
host    all all 127.0.0.1/32   trust
EOF
  chown "$PG_USER:$PG_GROUP" "$PG_DATA/pg_hba.conf"

  log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
  PG_STARTED=1
  [ -e "$PG_LOG" ] || install -o "$PG_USER" -g "$PG_GROUP" -m 0644 /dev/null "$PG_LOG"
  # Not fatal by itself: the TLS wait below reports the failure with the log.
  detached as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$WAIT_SECS" start >/dev/null ||
    log "pg_ctl start returned non-zero"
}

stop_postgres() {
  [ -f "$PG_DATA/PG_VERSION" ] || return 0
  if pg_cluster_running; then
    log "stopping PostgreSQL ($PG_DATA)"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null || log "pg_ctl stop failed"
  fi
}

# --- Redis --------------------------------------------------------------------

redis_ping() {
  local ca=$1 out
  out=$(timeout 3 redis-cli --tls --cacert "$ca" -h 127.0.0.1 -p "$REDIS_PORT" ping 2>&1) || true
  [ "$out" = "PONG" ] || {
    REDIS_LAST_ERROR=${out:-"no answer (nothing listening there, or it does not speak TLS)"}
    return 1
  }
}

# A Redis built without TLS fails on the directive itself; one with TLS and
# nowhere to listen exits right after reading the config. Either way nothing
# stays running.
check_redis_tls() {
  local out
  out=$(cd / && timeout 10 redis-server --port 0 --tls-port 0 --save "" --logfile "" 2>&1) || true
  case $out in
  *"Bad directive"* | *"FATAL CONFIG"*)
    die "$(command -v redis-server) was built without TLS support (--tls-port is unknown); install a TLS-enabled redis-server" ;;
  esac
}

start_redis() {
  command -v redis-server >/dev/null 2>&1 || die "redis-server is not installed"
  command -v redis-cli >/dev/null 2>&1 || die "redis-cli is not installed"
  if redis_ping "$TLS_DIR/ca.pem"; then
    log "Redis already answers over TLS on 127.0.0.1:$REDIS_PORT"
    return
  fi
  check_redis_tls
  log "starting Redis with TLS on 127.0.0.1:$REDIS_PORT (log: $REDIS_LOG)"
  REDIS_STARTED=1
  # --port 0: TLS only, nothing in the clear. The client-side CA file is
  # required by redis even with --tls-auth-clients no.
  detached redis-server --daemonize yes --port 0 --tls-port "$REDIS_PORT" --bind 127.0.0.1 \
    --tls-cert-file "$TLS_DIR/server.pem" --tls-key-file "$TLS_DIR/server.key" \
    --tls-ca-cert-file "$TLS_DIR/ca.pem" --tls-auth-clients no \
    --save "" --appendonly no --dir "$TLS_DIR" \
    --logfile "$REDIS_LOG" --pidfile "$REDIS_PID" >/dev/null ||
    log "redis-server returned non-zero"
}

# True if the pidfile names a live redis-server.
redis_alive() {
  local pid
  pid=$(cat "$REDIS_PID" 2>/dev/null) || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "redis-server" ]
}

# True once $1 is no longer a running redis-server (waits up to 5 s). Checks
# the name because the pidfile may be stale and its pid reused.
redis_gone() {
  local i
  for ((i = 0; i < 50; i++)); do
    [ "$(cat "/proc/$1/comm" 2>/dev/null || true)" = "redis-server" ] || return 0
    sleep 0.1
  done
  return 1
}

stop_redis() {
  local pid=""
  [ -f "$REDIS_PID" ] && pid=$(cat "$REDIS_PID" 2>/dev/null || true)
  if [ -f "$TLS_DIR/ca.pem" ] &&
    timeout 5 redis-cli --tls --cacert "$TLS_DIR/ca.pem" -h 127.0.0.1 -p "$REDIS_PORT" \
      shutdown nosave >/dev/null 2>&1; then
    log "stopping Redis on 127.0.0.1:$REDIS_PORT (SHUTDOWN)"
  fi
  # Fallback when SHUTDOWN over TLS did not work (e.g. the CA was replaced
  # under a running server).
  if [ -n "$pid" ] && ! redis_gone "$pid"; then
    log "stopping Redis pid $pid (SIGTERM)"
    kill "$pid" 2>/dev/null || true
    redis_gone "$pid" || log "Redis pid $pid is still running"
  fi
  rm -f "$REDIS_PID"
}

# --- commands -----------------------------------------------------------------

# Polls both servers over TLS for up to WAIT_SECS; stops early when a server
# we just started has already exited, since it will not come up any more.
wait_for_tls() {
  local i pg_ok=0 redis_ok=0 pg_dead=0 redis_dead=0
  PG_LAST_ERROR="not checked" REDIS_LAST_ERROR="not checked"
  for ((i = 0; i < WAIT_SECS; i++)); do
    [ "$pg_ok" = 1 ] || { pg_tls_check "$TLS_DIR/ca.pem" && pg_ok=1; } || true
    [ "$redis_ok" = 1 ] || { redis_ping "$TLS_DIR/ca.pem" && redis_ok=1; } || true
    [ "$pg_ok" = 1 ] && [ "$redis_ok" = 1 ] && break
    if [ "$i" -ge 1 ]; then
      [ "$pg_ok" = 1 ] || [ "$PG_STARTED" != 1 ] || pg_cluster_running || pg_dead=1
      [ "$redis_ok" = 1 ] || [ "$REDIS_STARTED" != 1 ] || redis_alive || redis_dead=1
      [ "$pg_dead" = 1 ] || [ "$redis_dead" = 1 ] && break
    fi
    sleep 1
  done
  if [ "$pg_ok" != 1 ]; then
    log "tail of $PG_LOG:"
    tail -n 20 "$PG_LOG" >&2 2>/dev/null || true
    [ "$pg_dead" = 1 ] && die "PostgreSQL on 127.0.0.1:$PG_PORT exited right after starting (see the log above)"
    die "PostgreSQL does not accept sslmode=verify-full on localhost:$PG_PORT after ${WAIT_SECS}s: $PG_LAST_ERROR"
  fi
  if [ "$redis_ok" != 1 ]; then
    log "tail of $REDIS_LOG:"
    tail -n 20 "$REDIS_LOG" >&2 2>/dev/null || true
    [ "$redis_dead" = 1 ] && die "Redis on 127.0.0.1:$REDIS_PORT exited right after starting (see the log above)"
    die "Redis does not answer PING over TLS on 127.0.0.1:$REDIS_PORT after ${WAIT_SECS}s: $REDIS_LAST_ERROR"
  fi
  log "PostgreSQL (verify-full, localhost:$PG_PORT) and Redis (TLS, 127.0.0.1:$REDIS_PORT) answer"
}

# Two test runs starting the services at once must not both initdb.
take_lock() {
  install -d -m 0755 "$TLS_DIR"
  exec 9>"$TLS_DIR/.lock"
  flock -w 120 9 || die "another tls-services.sh holds $TLS_DIR/.lock"
}

cmd_start() {
  PG_STARTED=0 REDIS_STARTED=0
  take_lock
  ensure_certs
  find_pg_bin
  if [ "$CERTS_CHANGED" = 1 ]; then
    # Servers read certificates only at startup.
    stop_postgres
    stop_redis
  fi
  start_postgres
  start_redis
  wait_for_tls
  print_env >&3
}

cmd_stop() {
  take_lock
  find_pg_bin
  stop_postgres
  stop_redis
  log "stopped"
}

# stdout is reserved for the export lines: everything else, including tools'
# chatter, goes to stderr; fd 3 is the real stdout.
exec 3>&1 1>&2

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
env) print_env >&3 ;;
*) die "usage: $0 start|stop|env" ;;
esac
