# Sourced by scripts/bench.sh: measure 11, nginx auth_request through the
# verifier sidecar (the shipped examples/nginx/recall-verifier.conf) against
# the same nginx with no auth, in one run: the release `recall` (SQLite),
# `recall verifier`, and nginx, whose own extra server block plays the API.
# Loopback only; wrk rounds of WRK_SECS, interleaved.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

json_field() { # field < json
  python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"
}

nginx_sidecar() {
  ensure_package nginx nginx
  local nginx_bin
  nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
  local dir="$WORK/nginx" bin="$ROOT/target/release/recall"
  mkdir -p "$dir/tmp" "$dir/data"
  local rport sport auth none up admin
  rport=$(free_port) sport=$(free_port) auth=$(free_port) none=$(free_port) up=$(free_port)
  admin=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  local pids=()
  # shellcheck disable=SC2317
  stop_all() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }
  RECALL_BIND="127.0.0.1:$rport" RECALL_DATA_DIR="$dir/data" RECALL_ADMIN_TOKEN="$admin" \
    RECALL_RATE_LIMIT_PER_MIN=1000000 RUST_LOG=warn "$bin" >"$dir/recall.log" 2>&1 &
  pids+=($!)
  local base="http://127.0.0.1:$rport" i
  for ((i = 0; i < 60; i++)); do
    curl -fsS "$base/readyz" >/dev/null 2>&1 && break
    sleep 0.5
  done
  local service access
  service=$(curl -fsS -H "authorization: Bearer $admin" -H 'content-type: application/json' \
    -d '{"name":"bench-nginx"}' "$base/v1/admin/services" | json_field token) || { stop_all; return 1; }
  curl -fsS -H 'content-type: application/json' \
    -d '{"username":"bench-nginx","password":"bench-password-1"}' "$base/v1/users" >/dev/null
  access=$(curl -fsS -H 'content-type: application/json' \
    -d '{"username":"bench-nginx","password":"bench-password-1"}' "$base/v1/auth/login" |
    json_field access_token) || { stop_all; return 1; }
  echo "$access" >"$dir/token.txt"
  RUST_LOG=warn "$bin" verifier --upstream "$base" --service-token "$service" \
    --bind "127.0.0.1:$sport" >"$dir/sidecar.log" 2>&1 &
  pids+=($!)
  for ((i = 0; i < 60; i++)); do
    curl -fsS "http://127.0.0.1:$sport/readyz" >/dev/null 2>&1 && break
    sleep 0.5
  done
  # The shipped config, ports swapped; nginx itself answers as the API, and
  # a second front door proxies to it with no auth (the baseline).
  sed -e "s/127.0.0.1:9090/127.0.0.1:$sport/" -e "s/127.0.0.1:8000/127.0.0.1:$up/" \
    -e "s/127.0.0.1:8081/127.0.0.1:$auth/" -e 's/^error_log stderr warn;/error_log stderr error;/' \
    "$ROOT/examples/nginx/recall-verifier.conf" | sed '$d' >"$dir/nginx.conf"
  cat >>"$dir/nginx.conf" <<NGINX
    server {
        listen 127.0.0.1:$up;
        location / { return 200 "ok"; }
    }
    server {
        listen 127.0.0.1:$none;
        location / {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://api;
        }
    }
}
NGINX
  "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -e stderr 2>"$dir/nginx.log" &
  pids+=($!)
  for ((i = 0; i < 40; i++)); do
    curl -fsS "http://127.0.0.1:$none/" >/dev/null 2>&1 && break
    sleep 0.25
  done
  local through
  through=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $access" "http://127.0.0.1:$auth/")
  if [ "$through" != 200 ]; then
    echo "    [nginx] a live token through nginx + sidecar answered $through" >&2
    cat "$dir/nginx.log" "$dir/sidecar.log" >&2
    stop_all
    return 1
  fi
  run_wrk "$none" "$dir/token.txt" 2 0 >/dev/null
  run_wrk "$auth" "$dir/token.txt" 2 0 >/dev/null
  local round
  for ((round = 1; round <= WRK_ROUNDS; round++)); do
    run_wrk "$none" "$dir/token.txt" "$WRK_SECS" 0 >"$WORK/wrk_nginx_none_r$round.txt"
    show nginx_none "round $round" "$WORK/wrk_nginx_none_r$round.txt"
    run_wrk "$auth" "$dir/token.txt" "$WRK_SECS" 0 >"$WORK/wrk_nginx_sidecar_r$round.txt"
    show nginx_sidecar "round $round" "$WORK/wrk_nginx_sidecar_r$round.txt"
  done
  stop_all
}
