#!/usr/bin/env bash
# A plain PHP API (examples/php: php-fpm behind nginx), as ratios in one
# run (issue 22, point 6). The same PHP, the same nginx, one live token:
#
#   a  no auth: nginx -> PHP (public/index.php, identity fixed in nginx)
#   b  nginx auth_request -> `recall verifier` sidecar -> PHP (/api/me)
#   c  PHP asks the sidecar's POST /oauth/introspect with curl (/introspect/me)
#   d  PHP asks Recall's POST /oauth/introspect with curl (/introspect/me)
#
# examples/php/nginx.conf and php-fpm.conf as written, placeholders filled
# in, in a temp dir; the copy of nginx.conf gets two more server blocks
# (a, and d on its own port), the php-fpm config a second pool for d (the
# same pool, RECALL_INTROSPECTION_URL on Recall instead of the sidecar).
# Release `recall` on the embedded store, wrk -t2 -c32, alternating rounds,
# best round per way; every answer must be 200. Loopback only. Prints each
# round and b/a, c/a, d/a; writes bench/php.json.
#
#   scripts/bench_php.sh       # scripts/bench.sh runs it as measure 16
#
# Knobs (env): PHP_BENCH_SECS (5) per run, PHP_BENCH_ROUNDS (3).
set -euo pipefail

SECS=${PHP_BENCH_SECS:-5}
ROUNDS=${PHP_BENCH_ROUNDS:-3}
THREADS=2
CONNS=32

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
# shellcheck source=scripts/services.sh
source scripts/services.sh
# shellcheck source=scripts/php_common.sh
source scripts/php_common.sh
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
APP=$ROOT/examples/php

# --- packages (scripts/php_common.sh) ---------------------------------------------------

ensure_php
ensure_package wrk wrk
ensure_package curl curl
log "using $("$PHP_FPM_BIN" -v | head -n 1 | cut -d' ' -f1-3) ($PHP_FPM_BIN), $("$NGINX_BIN" -v 2>&1), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"

log "build: cargo build --release --bin recall"
cargo build --release --bin recall --quiet || die "build failed"
RECALL_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/recall

# --- processes ------------------------------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/recall-bench-php.XXXXXX")
PIDS=()
cleanup() {
  stop_pids
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (up to 20 s) until URL answers 2xx.
wait_ready() {
  local url=$1 what=$2 i
  for ((i = 0; i < 200; i++)); do
    curl -fsS --max-time 2 "$url" >/dev/null 2>&1 && return
    sleep 0.1
  done
  fail "$what is not ready after 20s ($url)"
}

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

# Recall, release build, embedded store. No rate limit in the way, and a
# token that outlives any run length the knobs allow.
recall_port=$(free_port)
B=http://127.0.0.1:$recall_port
admin_token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
env RECALL_BIND="127.0.0.1:$recall_port" RECALL_PUBLIC_URL="$B" RECALL_DATA_DIR="$work/data" \
  RECALL_ADMIN_TOKEN="$admin_token" RECALL_RATE_LIMIT_PER_MIN=100000000 \
  RECALL_ACCESS_TTL_SECS=3600 RUST_LOG=warn \
  "$RECALL_BIN" serve >"$work/recall.log" 2>&1 &
PIDS+=($!)
wait_ready "$B/readyz" "Recall"

curl -fsS -H 'content-type: application/json' \
  -d '{"username":"php-bench","password":"correct horse battery"}' "$B/v1/users" >"$work/user.json" ||
  fail "register php-bench"
USER_ID=$(json_field user_id <"$work/user.json")
service=$(curl -fsS -H "authorization: Bearer $admin_token" -H 'content-type: application/json' \
  -d '{"name":"php-bench"}' "$B/v1/admin/services") || fail "POST /v1/admin/services"
SERVICE_ID=$(json_field service_id <<<"$service")
SERVICE_TOKEN=$(json_field token <<<"$service")
login=$(curl -fsS -H 'content-type: application/json' \
  -d '{"username":"php-bench","password":"correct horse battery"}' "$B/v1/auth/login") ||
  fail "login php-bench"
AT=$(json_field access_token <<<"$login")
SESSION_ID=$(json_field session_id <<<"$login")
log "Recall (release) on $B: user $USER_ID, session $SESSION_ID, service $SERVICE_ID"

sidecar_port=$(free_port)
RUST_LOG=warn "$RECALL_BIN" verifier --upstream "$B" --service-token "$SERVICE_TOKEN" \
  --bind "127.0.0.1:$sidecar_port" >"$work/sidecar.log" 2>&1 &
PIDS+=($!)
wait_ready "http://127.0.0.1:$sidecar_port/readyz" "recall verifier (sidecar)"
S=http://127.0.0.1:$sidecar_port
log "recall verifier (sidecar) on $S"

# php-fpm: examples/php/php-fpm.conf filled in (its pool asks the sidecar,
# c), and the same pool again under another name and port asking Recall (d).
php_port=$(free_port)
php_direct_port=$(free_port)
fill_fpm() { # PHP_FPM INTROSPECTION_URL < template
  sed -e "s|@WORK@|$work|g" -e "s|@PHP_FPM@|$1|g" -e "s|@INTROSPECTION_URL@|$2|g" \
    -e "s|@SERVICE_ID@|$SERVICE_ID|g" -e "s|@SERVICE_TOKEN@|$SERVICE_TOKEN|g"
}
fill_fpm "127.0.0.1:$php_port" "$S/oauth/introspect" <"$APP/php-fpm.conf" >"$work/php-fpm.conf"
grep -q '^\[recall-api\]$' "$APP/php-fpm.conf" || fail "examples/php/php-fpm.conf has no [recall-api] pool"
sed -n '/^\[recall-api\]$/,$p' "$APP/php-fpm.conf" | sed 's/^\[recall-api\]$/[recall-api-direct]/' |
  fill_fpm "127.0.0.1:$php_direct_port" "$B/oauth/introspect" >>"$work/php-fpm.conf"
start_php_fpm
wait_port "$php_port" "php-fpm (pool recall-api)"
wait_port "$php_direct_port" "php-fpm (pool recall-api-direct)"
log "php-fpm on 127.0.0.1:$php_port (introspection on the sidecar) and 127.0.0.1:$php_direct_port (on Recall)"

# nginx: examples/php/nginx.conf filled in (b on /api/, c on /introspect/),
# its closing brace replaced by two more server blocks: a (the same PHP,
# no auth_request, the identity fixed here) and d (/introspect/ on the
# pool asking Recall). The /upstream/ location needs an address; nothing
# listens there and nothing here calls it.
nginx_port=$(free_port)
none_port=$(free_port)
direct_port=$(free_port)
unused_port=$(free_port)
prefix=$work/nginx
mkdir -p "$prefix/tmp"
sed -e "s|@LISTEN@|127.0.0.1:$nginx_port|g" -e "s|@SIDECAR@|127.0.0.1:$sidecar_port|g" \
  -e "s|@PHP_FPM@|127.0.0.1:$php_port|g" -e "s|@UPSTREAM@|127.0.0.1:$unused_port|g" \
  -e "s|@APP@|$APP|g" "$APP/nginx.conf" >"$prefix/nginx.conf"
[ "$(tail -n 1 "$prefix/nginx.conf")" = "}" ] || fail "examples/php/nginx.conf does not end with the http block's }"
sed -i '$d' "$prefix/nginx.conf"
cat >>"$prefix/nginx.conf" <<NGINX

    # bench_php.sh, a: the same PHP with no auth at all.
    server {
        listen 127.0.0.1:$none_port;
        root $APP/public;
        default_type application/json;
        location /api/ {
            include fastcgi_params;
            fastcgi_param SCRIPT_FILENAME \$document_root/index.php;
            fastcgi_param SCRIPT_NAME /index.php;
            fastcgi_param HTTP_X_USER_ID $USER_ID;
            fastcgi_param HTTP_X_SESSION_ID $SESSION_ID;
            fastcgi_pass php;
        }
    }

    # bench_php.sh, d: PHP's introspection on Recall itself.
    upstream php_direct {
        server 127.0.0.1:$php_direct_port;
    }
    server {
        listen 127.0.0.1:$direct_port;
        root $APP/public;
        default_type application/json;
        location /introspect/ {
            include fastcgi_params;
            fastcgi_param SCRIPT_FILENAME \$document_root/introspect.php;
            fastcgi_param SCRIPT_NAME /introspect.php;
            fastcgi_param HTTP_X_USER_ID "";
            fastcgi_param HTTP_X_SESSION_ID "";
            fastcgi_pass php_direct;
        }
    }
}
NGINX
cp "$APP/fastcgi_params" "$prefix/fastcgi_params"
if grep -q '@[A-Z_]*@' "$prefix/nginx.conf"; then
  fail "unfilled placeholders in nginx.conf: $(grep -o '@[A-Z_]*@' "$prefix/nginx.conf" | sort -u | tr '\n' ' ')"
fi
"$NGINX_BIN" -t -q -p "$prefix" -c "$prefix/nginx.conf" >"$work/nginx.log" 2>&1 ||
  fail "nginx rejects the config: $(cat "$work/nginx.log")"
"$NGINX_BIN" -p "$prefix" -c "$prefix/nginx.conf" >>"$work/nginx.log" 2>&1 &
PIDS+=($!)
wait_port "$nginx_port" "nginx"
wait_port "$none_port" "nginx (no auth)"
wait_port "$direct_port" "nginx (introspection on Recall)"

# --- the four ways ---------------------------------------------------------------------

WAYS=(a b c d)
declare -A URL=(
  [a]="http://127.0.0.1:$none_port/api/me"
  [b]="http://127.0.0.1:$nginx_port/api/me"
  [c]="http://127.0.0.1:$nginx_port/introspect/me"
  [d]="http://127.0.0.1:$direct_port/introspect/me"
)
declare -A WHAT=(
  [a]="PHP, no auth"
  [b]="nginx auth_request -> sidecar -> PHP"
  [c]="PHP -> curl -> sidecar introspection"
  [d]="PHP -> curl -> Recall introspection"
)

# Each way answers 200 with this user and session for the token.
for way in "${WAYS[@]}"; do
  got=$(curl -sS --max-time 5 -w ' %{http_code}' -H "authorization: Bearer $AT" "${URL[$way]}") ||
    fail "$way (${WHAT[$way]}): no answer from ${URL[$way]}"
  [ "${got##* }" = 200 ] || fail "$way (${WHAT[$way]}): ${URL[$way]} answered $got"
  body=${got% *}
  body=${body%$'\n'}
  [ "$(json_field user_id <<<"$body")" = "$USER_ID" ] && [ "$(json_field session_id <<<"$body")" = "$SESSION_ID" ] ||
    fail "$way (${WHAT[$way]}): another identity: $body"
  log "$way  ${WHAT[$way]}: ${URL[$way]} 200 $body"
done
# And the protected ways refuse a bad token (they are really checking).
for way in b c d; do
  code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -H "authorization: Bearer not-a-jwt" "${URL[$way]}") || true
  [ "$code" = 401 ] || fail "$way (${WHAT[$way]}): a bad token answered $code, not 401"
done

# load WAY SECS: one wrk run, prints its WRK_JSON object.
load() {
  local way=$1 secs=$2 path
  path=/${URL[$way]#http://*/}
  BENCH_TOKEN=$AT BENCH_PATH=$path wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --timeout 5s \
    -s "$ROOT/bench/wrk_php.lua" "${URL[$way]%"$path"}" >"$work/wrk.txt" 2>&1 ||
    { cat "$work/wrk.txt" >&2; return 1; }
  sed -n 's/^WRK_JSON //p' "$work/wrk.txt"
}

log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
log "warm-up: 2 s per way (not recorded)"
for way in "${WAYS[@]}"; do
  load "$way" 2 >/dev/null || fail "wrk failed on $way"
done
log "wrk -t$THREADS -c$CONNS -d${SECS}s, $ROUNDS alternating rounds"
: >"$work/results.jsonl"
for ((round = 1; round <= ROUNDS; round++)); do
  for way in "${WAYS[@]}"; do
    r=$(load "$way" "$SECS") || fail "wrk failed on $way"
    [ -n "$r" ] || fail "wrk printed no WRK_JSON on $way: $(cat "$work/wrk.txt")"
    echo "{\"way\":\"$way\",\"round\":$round,\"wrk\":$r}" >>"$work/results.jsonl"
    printf '    round %d  %s  %-40s %s\n' "$round" "$way" "${WHAT[$way]}" \
      "$(python3 -c 'import json,sys; w=json.loads(sys.argv[1]); print("%8.0f req/s  p50 %6d us  p99 %6d us  non-2xx %d  socket errors %d" % (w["rps"], w["p50_us"], w["p99_us"], w["non2xx"], w["socket_errors"]))' "$r")"
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$work/results.jsonl" "$ROOT/bench/php.json" "$SECS" "$ROUNDS" "$(nproc)" "$load_after" \
  "$("$PHP_FPM_BIN" -v | head -n 1 | cut -d' ' -f1-2)" "$("$NGINX_BIN" -v 2>&1 | sed 's/.*: //')" <<'PY'
import json, sys, datetime, subprocess
rows = [json.loads(l) for l in open(sys.argv[1])]
secs, rounds, nproc, load, php, nginx = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7], sys.argv[8]
what = {
    "a": "PHP, no auth (nginx -> php-fpm)",
    "b": "nginx auth_request -> recall verifier sidecar -> PHP",
    "c": "PHP -> curl POST /oauth/introspect on the sidecar",
    "d": "PHP -> curl POST /oauth/introspect on Recall",
}
bad = [r for r in rows if r["wrk"]["non2xx"] or r["wrk"]["socket_errors"] or not r["wrk"]["requests"]]
best = {w: max((r["wrk"] for r in rows if r["way"] == w), key=lambda x: x["rps"]) for w in what}
try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
except Exception:
    commit = "unknown"
out = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "commit": commit,
    "machine": {"cores": nproc, "load_average_after": load},
    "software": {"php": php, "nginx": nginx, "recall": "release build, embedded store"},
    "wrk": {"threads": 2, "connections": 32, "secs": secs, "rounds": rounds, "token": "one live token"},
    "ways": what,
    "runs": rows,
    "best": best,
    "ratios": {
        f"{w}/a": {
            "rps": round(best[w]["rps"] / best["a"]["rps"], 3),
            "p99": round(best[w]["p99_us"] / best["a"]["p99_us"], 3),
        }
        for w in "bcd"
    },
    "refused_or_failed_runs": len(bad),
}
json.dump(out, open(sys.argv[2], "w"), indent=2)
print("    best round per way:")
for w in what:
    b = best[w]
    print(f"      {w}  {what[w]:<54} {b['rps']:>8.0f} req/s  p99 {b['p99_us']:>6} us")
print("    ratios (best rounds):")
for w in "bcd":
    r = out["ratios"][f"{w}/a"]
    print(f"      {w}/a  req/s {r['rps']:.2f}x  p99 {r['p99']:.2f}x")
if bad:
    print(f"    {len(bad)} runs had non-2xx answers or socket errors (see bench/php.json)")
    sys.exit(1)
print(f"    every request answered 200 ({sum(r['wrk']['requests'] for r in rows)} requests in {len(rows)} runs)")
PY
log "bench_php: bench/php.json written"
