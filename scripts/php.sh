#!/usr/bin/env bash
# A plain PHP API (examples/php) in front of Recall with real software:
# Debian's php-fpm with ext-curl, nginx, the `recall verifier` sidecar and
# Recall itself (embedded store), all on loopback under a temp dir. Checks
# what docs/PHP.md promises a PHP developer:
#
#   - a token gets through nginx (FastCGI to PHP, and proxy_pass to a
#     non-PHP upstream) and through PHP's own introspection call;
#   - a client's forged X-User-Id never reaches the application, checked
#     in PHP and on the wire (every FastCGI param nginx sends);
#   - no token: 401; after logout: 401 within 100 ms, everywhere;
#   - Recall down: after the sidecar's staleness bound, 503 with
#     Retry-After and a JSON body through nginx (never 500), and 503 from
#     the introspection route at once.
#
#   scripts/php.sh            # as scripts/test.sh runs it
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh
# shellcheck source=scripts/php_common.sh
source scripts/php_common.sh

APP=$PWD/examples/php
LOGOUT_BOUND_MS=100   # logout to 401, through the sidecar
STALE_WAIT_SECS=10    # the sidecar's bound is 5 s (--max-staleness-ms default)

# --- packages -------------------------------------------------------------------

ensure_php
log "using $("$PHP_FPM_BIN" -v | head -n 1 | cut -d' ' -f1-3) ($PHP_FPM_BIN) and $("$NGINX_BIN" -v 2>&1)"

# --- processes ------------------------------------------------------------------

work=$(mktemp -d /tmp/recall-php.XXXXXX)
PIDS=()
cleanup() {
  stop_pids
  stop_recall
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The debug build: scripts/test.sh's other steps build the same.
log "building recall (debug)"
cargo build --quiet --bin recall
RECALL_BIN=${CARGO_TARGET_DIR:-target}/debug/recall

admin_token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
start_recall "$work" RECALL_ADMIN_TOKEN="$admin_token"
B=$RECALL_BASE

# --- HTTP helpers -----------------------------------------------------------------

# req METHOD URL [curl args...]: sets STATUS, BODY and HEADERS (lowercase
# names). STATUS is 000 when nothing answered.
req() {
  local method=$1 url=$2
  shift 2
  STATUS=$(curl -sS --max-time 5 -X "$method" -o "$work/body" -D "$work/headers" \
    -w '%{http_code}' "$url" "$@" 2>/dev/null) || STATUS=${STATUS:-000}
  BODY=$(cat "$work/body" 2>/dev/null || true)
  HEADERS=$(tr -d '\r' <"$work/headers" 2>/dev/null |
    awk 'BEGIN { FS = OFS = ":" } { $1 = tolower($1); print }' || true)
  rm -f "$work/body" "$work/headers"
}

# json EXPR: evaluates EXPR (Python, `j` is the parsed BODY) and prints it.
json() {
  printf '%s' "$BODY" | python3 -c "import json,sys; j=json.load(sys.stdin); print($1)" 2>/dev/null || true
}

header() { printf '%s\n' "$HEADERS" | sed -n "s/^$1: *//p" | tail -n 1; }

ok() { printf '    ok  %s\n' "$*"; }

now_ms() { date +%s%3N; }

expect_status() {
  local want=$1 what=$2
  [ "$STATUS" = "$want" ] || fail "$what: expected $want, got $STATUS: $BODY"
}

# --- Recall: a user, a token, a service credential ---------------------------------

req POST "$B/v1/users" -H 'content-type: application/json' \
  -d '{"username":"php-alice","password":"correct horse battery"}'
expect_status 201 "register php-alice"
USER_ID=$(json 'j["user_id"]')

login() {
  req POST "$B/v1/auth/login" -H 'content-type: application/json' \
    -d '{"username":"php-alice","password":"correct horse battery"}'
  expect_status 200 "login php-alice"
  AT=$(json 'j["access_token"]')
  SESSION_ID=$(json 'j["session_id"]')
}
login

req POST "$B/v1/admin/services" -H "authorization: Bearer $admin_token" \
  -H 'content-type: application/json' -d '{"name":"php-api"}'
expect_status 201 "POST /v1/admin/services"
SERVICE_ID=$(json 'j["service_id"]')
SERVICE_TOKEN=$(json 'j["token"]')
log "Recall on $B: user $USER_ID, session $SESSION_ID, service $SERVICE_ID"

# --- the sidecar, the upstreams, php-fpm, nginx ------------------------------------

sidecar_port=$(free_port)
"$RECALL_BIN" verifier --upstream "$B" --service-token "$SERVICE_TOKEN" \
  --bind "127.0.0.1:$sidecar_port" >"$work/sidecar.log" 2>&1 &
PIDS+=($!)
SIDECAR_PID=$!
sidecar_ready() { curl -fsS --max-time 2 "http://127.0.0.1:$sidecar_port/readyz" >/dev/null 2>&1; }
for ((i = 0; i < 200; i++)); do
  sidecar_ready && break
  sleep 0.1
done
sidecar_ready || fail "recall verifier on 127.0.0.1:$sidecar_port is not ready after 20s"
log "recall verifier (sidecar) on 127.0.0.1:$sidecar_port"

upstream_port=$(free_port)
python3 "$APP/echo_upstream.py" http "$upstream_port" >"$work/upstream.log" 2>&1 &
PIDS+=($!)
fcgi_echo_port=$(free_port)
python3 "$APP/echo_upstream.py" fastcgi "$fcgi_echo_port" >"$work/fcgi-echo.log" 2>&1 &
PIDS+=($!)
wait_port "$upstream_port" "the header-echo upstream"
wait_port "$fcgi_echo_port" "the FastCGI param echo"

php_port=$(free_port)
sed -e "s|@WORK@|$work|g" -e "s|@PHP_FPM@|127.0.0.1:$php_port|g" \
  -e "s|@INTROSPECTION_URL@|$B/oauth/introspect|g" \
  -e "s|@SERVICE_ID@|$SERVICE_ID|g" -e "s|@SERVICE_TOKEN@|$SERVICE_TOKEN|g" \
  "$APP/php-fpm.conf" >"$work/php-fpm.conf"
start_php_fpm
wait_port "$php_port" "php-fpm"
log "php-fpm on 127.0.0.1:$php_port"

# One nginx: examples/php/nginx.conf as written, placeholders filled in.
# With PHP_FPM pointing at the FastCGI echo instead of php-fpm, the same
# file shows on the wire which FastCGI params nginx sends.
start_nginx() {
  local name=$1 port=$2 fastcgi=$3 prefix=$work/$1
  mkdir -p "$prefix/tmp"
  sed -e "s|@LISTEN@|127.0.0.1:$port|g" -e "s|@SIDECAR@|127.0.0.1:$sidecar_port|g" \
    -e "s|@PHP_FPM@|$fastcgi|g" -e "s|@UPSTREAM@|127.0.0.1:$upstream_port|g" \
    -e "s|@APP@|$APP|g" "$APP/nginx.conf" >"$prefix/nginx.conf"
  cp "$APP/fastcgi_params" "$prefix/fastcgi_params"
  if grep -q '@[A-Z_]*@' "$prefix/nginx.conf"; then
    fail "unfilled placeholders in nginx.conf: $(grep -o '@[A-Z_]*@' "$prefix/nginx.conf" | sort -u | tr '\n' ' ')"
  fi
  "$NGINX_BIN" -t -q -p "$prefix" -c "$prefix/nginx.conf" >"$work/$name.log" 2>&1 ||
    fail "nginx rejects the config: $(cat "$work/$name.log")"
  "$NGINX_BIN" -p "$prefix" -c "$prefix/nginx.conf" >>"$work/$name.log" 2>&1 &
  PIDS+=($!)
  wait_port "$port" "nginx ($name)"
}
nginx_port=$(free_port)
start_nginx nginx "$nginx_port" "127.0.0.1:$php_port"
wire_port=$(free_port)
start_nginx nginx-wire "$wire_port" "127.0.0.1:$fcgi_echo_port"
N=http://127.0.0.1:$nginx_port
W=http://127.0.0.1:$wire_port
log "nginx on $N (PHP), and on $W (the same config, FastCGI to the param echo)"

# --- 1. a good token -----------------------------------------------------------------

log "1. a user's token"
req GET "$N/api/me" -H "authorization: Bearer $AT"
expect_status 200 "GET /api/me (nginx, sidecar, FastCGI)"
[ "$(json 'j["user_id"]')" = "$USER_ID" ] && [ "$(json 'j["session_id"]')" = "$SESSION_ID" ] ||
  fail "GET /api/me answered another identity: $BODY"
ok "GET /api/me through nginx + sidecar + FastCGI: 200 $BODY"

req GET "$N/upstream/whoami" -H "authorization: Bearer $AT"
expect_status 200 "GET /upstream/whoami (nginx, sidecar, proxy_pass)"
[ "$(json '[v for k, v in j["headers"] if k.lower() == "x-user-id"]')" = "['$USER_ID']" ] ||
  fail "the proxied upstream did not get exactly X-User-Id: $USER_ID: $BODY"
ok "GET /upstream/whoami through nginx + sidecar + proxy_pass: 200, the upstream got X-User-Id: $USER_ID"

req GET "$N/introspect/me" -H "authorization: Bearer $AT"
expect_status 200 "GET /introspect/me (PHP calls introspection)"
[ "$(json 'j["user_id"]')" = "$USER_ID" ] || fail "GET /introspect/me answered another identity: $BODY"
ok "GET /introspect/me, PHP asking $B/oauth/introspect (Basic service_id:token): 200 $BODY"

# --- 2. a forged identity header -------------------------------------------------------

log "2. the same token with a forged X-User-Id"
# Every spelling a client might try: two headers, lower case, underscores
# (nginx drops headers with underscores by default; had it not, the param
# name would be the same HTTP_X_USER_ID).
forged=(-H 'X-User-Id: attacker' -H 'x-user-id: attacker' -H 'X_User_Id: attacker'
  -H 'X-Session-Id: attacker')
req GET "$N/api/me" -H "authorization: Bearer $AT" "${forged[@]}"
expect_status 200 "GET /api/me with a forged X-User-Id"
[ "$(json 'j["user_id"]')" = "$USER_ID" ] && [ "$(json 'j["session_id"]')" = "$SESSION_ID" ] ||
  fail "PHP took the client's X-User-Id: $BODY"
ok "GET /api/me (FastCGI) with X-User-Id, x-user-id, X_User_Id and X-Session-Id all \"attacker\": PHP sees $(json 'j["user_id"]')"

req GET "$W/api/me" -H "authorization: Bearer $AT" "${forged[@]}"
expect_status 200 "GET /api/me (FastCGI param echo) with a forged X-User-Id"
wire=$(json '[[k, v] for k, v in j["params"] if k.startswith("HTTP_X_")]')
[ "$wire" = "[['HTTP_X_USER_ID', '$USER_ID'], ['HTTP_X_SESSION_ID', '$SESSION_ID']]" ] ||
  fail "nginx's FastCGI params for /api/me are not exactly the sidecar's identity: $wire"
case "$BODY" in *attacker*) fail "\"attacker\" reached FastCGI: $BODY" ;; esac
ok "on the wire to FastCGI, every HTTP_X_* param nginx sent: $wire (no \"attacker\" anywhere)"

req GET "$N/upstream/whoami" -H "authorization: Bearer $AT" "${forged[@]}"
expect_status 200 "GET /upstream/whoami with a forged X-User-Id"
case "$BODY" in *attacker*) fail "\"attacker\" reached the proxied upstream: $BODY" ;; esac
upstream_ids=$(json '[[k, v] for k, v in j["headers"] if k.lower() in ("x-user-id", "x-session-id")]')
[ "$upstream_ids" = "[['X-User-Id', '$USER_ID'], ['X-Session-Id', '$SESSION_ID']]" ] ||
  fail "the proxied upstream got other identity headers: $upstream_ids"
ok "proxy_pass: the upstream got $upstream_ids (no \"attacker\" anywhere)"

req GET "$W/introspect/me" -H "authorization: Bearer $AT" "${forged[@]}"
expect_status 200 "GET /introspect/me (FastCGI param echo) with a forged X-User-Id"
wire=$(json '[[k, v] for k, v in j["params"] if k.startswith("HTTP_X_")]')
[ "$wire" = "[]" ] || fail "nginx's FastCGI params for /introspect/ carry identity headers: $wire"
case "$BODY" in *attacker*) fail "\"attacker\" reached FastCGI: $BODY" ;; esac
ok "the unprotected /introspect/ location: HTTP_X_* params on the wire: $wire (the empty fastcgi_param drops the client's)"

# --- 3. no token, a bad token ------------------------------------------------------------

log "3. no token, a bad token"
for url in "$N/api/me" "$N/upstream/whoami" "$N/introspect/me"; do
  for auth in "" "Bearer not-a-jwt"; do
    if [ -n "$auth" ]; then req GET "$url" -H "authorization: $auth"; else req GET "$url"; fi
    expect_status 401 "GET $url with ${auth:-no token}"
    case "$(header www-authenticate)" in
      Bearer*) ;;
      *) fail "GET $url with ${auth:-no token}: 401 without WWW-Authenticate: Bearer ($HEADERS)" ;;
    esac
    [ "$(json 'j["error"]')" = invalid_token ] || fail "GET $url with ${auth:-no token}: body is not JSON invalid_token: $BODY"
    [ "$(printf '%s\n' "$HEADERS" | grep -c '^www-authenticate:')" = 1 ] ||
      fail "GET $url with ${auth:-no token}: not exactly one WWW-Authenticate: $HEADERS"
    ok "GET /${url#http://127.0.0.1:*/} with ${auth:-no token}: 401, $(header www-authenticate), $BODY"
  done
done
# No token but a forged identity: PHP must never run.
req GET "$N/api/me" "${forged[@]}"
expect_status 401 "GET /api/me with no token and a forged X-User-Id"
ok "GET /api/me with no token and X-User-Id: attacker: 401"

# --- 4. logout ------------------------------------------------------------------------

log "4. logout, then the same token: one session per route, each timed from its logout's 204"
# Logs in, logs out, and polls URL with the logged-out token until it
# answers 401; fails past LOGOUT_BOUND_MS after the 204.
logout_then_401() {
  local url=$1 what=$2 start elapsed polls=0
  login
  req GET "$url" -H "authorization: Bearer $AT"
  expect_status 200 "$what before logout"
  req POST "$B/v1/auth/logout" -H "authorization: Bearer $AT"
  start=$(now_ms)
  expect_status 204 "POST /v1/auth/logout"
  while true; do
    req GET "$url" -H "authorization: Bearer $AT"
    elapsed=$(($(now_ms) - start))
    polls=$((polls + 1))
    if [ "$STATUS" = 401 ]; then
      ok "$what: 401 on request $polls after logout's 204, answered ${elapsed} ms after it"
      return
    fi
    [ "$STATUS" = 200 ] || fail "$what after logout: $STATUS (expected 200 then 401): $BODY"
    [ "$elapsed" -le "$LOGOUT_BOUND_MS" ] ||
      fail "$what still answers 200 ${elapsed} ms after logout (bound ${LOGOUT_BOUND_MS} ms)"
    sleep 0.002
  done
}
logout_then_401 "$N/api/me" "GET /api/me (nginx + sidecar + FastCGI)"
logout_then_401 "$N/upstream/whoami" "GET /upstream/whoami (nginx + sidecar + proxy_pass)"
logout_then_401 "$N/introspect/me" "GET /introspect/me (PHP + introspection on Recall)"

# --- 5. Recall down ---------------------------------------------------------------------

log "5. Recall down: fail closed"
login
req GET "$N/api/me" -H "authorization: Bearer $AT"
expect_status 200 "GET /api/me with a new token"
ok "a new session ($SESSION_ID): GET /api/me 200"
kill -KILL "$RECALL_PID"
wait "$RECALL_PID" 2>/dev/null || true
RECALL_PID=
killed=$(now_ms)
ok "Recall killed (SIGKILL)"

req GET "$N/introspect/me" -H "authorization: Bearer $AT"
expect_status 503 "GET /introspect/me with Recall down"
[ "$(header retry-after)" = 1 ] && [ "$(json 'j["error"]')" = unavailable ] ||
  fail "GET /introspect/me with Recall down: 503 without Retry-After or JSON: $HEADERS $BODY"
ok "GET /introspect/me: 503 at once, Retry-After: $(header retry-after), $BODY"

# Through the sidecar: 200 while it is within its staleness bound, then
# 503. Anything else (500 above all) fails.
seen_200=0
while true; do
  req GET "$N/api/me" -H "authorization: Bearer $AT"
  elapsed=$(($(now_ms) - killed))
  case "$STATUS" in
    200) seen_200=$((seen_200 + 1)) ;;
    503) break ;;
    *) fail "GET /api/me ${elapsed} ms after Recall died: $STATUS (only 200 or 503 are right): $BODY" ;;
  esac
  [ "$elapsed" -le $((STALE_WAIT_SECS * 1000)) ] ||
    fail "GET /api/me still 200 ${elapsed} ms after Recall died (the sidecar's bound is 5 s)"
  sleep 0.2
done
[ "$(header retry-after)" = 1 ] || fail "503 without Retry-After: 1: $HEADERS"
[ "$(json 'j["error"]')" = unavailable ] || fail "503 without a JSON unavailable body: $BODY"
case "$(header content-type)" in application/json*) ;; *) fail "503 is not application/json: $HEADERS" ;; esac
ok "GET /api/me: 200 while the sidecar is within its bound ($seen_200 polls), 503 ${elapsed} ms after Recall died"
ok "    Retry-After: $(header retry-after), content-type: $(header content-type), $BODY"
req GET "$N/upstream/whoami" -H "authorization: Bearer $AT"
expect_status 503 "GET /upstream/whoami with the sidecar stale"
[ "$(header retry-after)" = 1 ] && [ "$(json 'j["error"]')" = unavailable ] ||
  fail "GET /upstream/whoami: 503 without Retry-After or JSON: $HEADERS $BODY"
ok "GET /upstream/whoami: 503, Retry-After: 1, JSON"
req GET "http://127.0.0.1:$sidecar_port/readyz"
expect_status 503 "the sidecar's /readyz with Recall down"
ok "the sidecar's /readyz: 503 $BODY"

kill "$SIDECAR_PID"
wait "$SIDECAR_PID" 2>/dev/null || true
req GET "$N/api/me" -H "authorization: Bearer $AT"
expect_status 503 "GET /api/me with the sidecar itself down"
[ "$(header retry-after)" = 1 ] && [ "$(json 'j["error"]')" = unavailable ] ||
  fail "GET /api/me with the sidecar down: 503 without Retry-After or JSON: $HEADERS $BODY"
ok "the sidecar killed too: GET /api/me 503 (nginx cannot reach it), not 500 or 502"

log "php: every check passed"
