#!/usr/bin/env bash
# Shared by scripts/php.sh and scripts/bench_php.sh (source it after
# scripts/services.sh): Debian's php-fpm with ext-curl and nginx, installed
# when missing, and the helpers that start and watch their processes.
# Callers set $work (a temp dir for logs) and kill "${PIDS[@]}" on exit.

# The php-fpm binary (Debian names it after the version: php-fpm8.2).
php_fpm_binary() {
  local b
  for b in php-fpm $(find /usr/sbin /usr/bin -maxdepth 1 -name 'php-fpm*' -printf '%f\n' 2>/dev/null | sort -rV); do
    if command -v "$b" >/dev/null 2>&1; then
      command -v "$b"
      return
    fi
    if [ -x "/usr/sbin/$b" ]; then
      echo "/usr/sbin/$b"
      return
    fi
  done
  return 1
}

# Installs nginx, php-fpm and php-curl if missing; sets PHP_FPM_BIN and NGINX_BIN.
ensure_php() {
  ensure_package nginx nginx
  if ! PHP_FPM_BIN=$(php_fpm_binary); then
    [ "$(id -u)" = 0 ] || die "php-fpm is missing; install Debian's php-fpm and php-curl packages"
    # Debian's php-fpm depends on php<version>-fpm, whose binary is
    # php-fpm<version>: ask apt which version that is.
    apt-cache depends php-fpm >/dev/null 2>&1 || apt-get update -qq >/dev/null || true
    local php_version
    php_version=$(apt-cache depends php-fpm 2>/dev/null | sed -n 's/.*Depends: php\([0-9.]*\)-fpm$/\1/p' | head -n 1)
    [ -n "$php_version" ] || die "apt knows no php-fpm package (Debian's php-fpm is needed)"
    ensure_package "php-fpm$php_version" php-fpm
    PHP_FPM_BIN=$(php_fpm_binary) || die "php-fpm installed but no php-fpm binary found"
  fi
  # ext-curl: ensure_package looks for a command, an extension has none.
  if ! "$PHP_FPM_BIN" -m 2>/dev/null | grep -qx curl; then
    [ "$(id -u)" = 0 ] || die "PHP's curl extension is missing; install Debian's php-curl package"
    log "installing php-curl (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq php-curl >/dev/null ||
      die "apt-get could not install php-curl"
    "$PHP_FPM_BIN" -m 2>/dev/null | grep -qx curl || die "php-curl installed but $PHP_FPM_BIN has no curl extension"
  fi
  NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
}

# Kills and reaps every process in PIDS.
stop_pids() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}

# Dies after showing the last lines of every log in $work.
fail() {
  local f
  for f in "$work"/*.log; do
    [ -s "$f" ] || continue
    printf -- '--- %s (last lines)\n' "${f##*/}" >&2
    tail -n 15 "$f" >&2
  done
  die "$*"
}

# Waits (up to SECS) until a TCP listener answers on 127.0.0.1:PORT.
wait_port() {
  local port=$1 what=$2 secs=${3:-20} i
  for ((i = 0; i < secs * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return
    fi
    sleep 0.1
  done
  fail "$what does not listen on 127.0.0.1:$port after ${secs}s"
}

# Checks $work/php-fpm.conf and starts php-fpm on it in the foreground
# (a child in PIDS), as root too (-R, as CI runs).
start_php_fpm() {
  local root_flag=()
  [ "$(id -u)" = 0 ] && root_flag=(-R)
  "$PHP_FPM_BIN" -t -y "$work/php-fpm.conf" "${root_flag[@]}" >"$work/php-fpm-check.log" 2>&1 ||
    fail "php-fpm rejects $work/php-fpm.conf: $(cat "$work/php-fpm-check.log")"
  "$PHP_FPM_BIN" -F -O -y "$work/php-fpm.conf" "${root_flag[@]}" >>"$work/php-fpm.log" 2>&1 &
  PIDS+=($!)
}
