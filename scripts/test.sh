#!/usr/bin/env bash
# The one test command (README.md and .ci/run call it): make sure PostgreSQL
# and Redis answer, then fmt, clippy and the whole test suite. The fleet tests
# need both services, so a missing service is a failure, never a skip.
set -euo pipefail

# shellcheck source=scripts/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/services.sh"

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

ensure_test_urls
# nginx runs auth_request against the verifier sidecar (tests/api/nginx.rs).
ensure_package nginx nginx
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

# A PostgreSQL with ssl = on and a Redis with a TLS port, certificates from a
# throwaway CA made here: the TLS tests (tests/api/trust.rs) need them, so a
# failure to start them fails the run.
tls_exports=$(bash scripts/tls-services.sh start) ||
  die "could not start the TLS PostgreSQL and Redis (scripts/tls-services.sh)"
eval "$tls_exports"
log "TLS PostgreSQL and Redis answer ($RECALL_TEST_TLS_DATABASE_URL, $RECALL_TEST_TLS_REDIS_URL)"

total_started=$SECONDS
step "fmt" cargo fmt --all --check
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
# The verifier crate holds only public keys and the feed: no database
# driver, no Redis client, no argon2 may creep into its dependency tree.
verifier_is_light() {
  local heavy
  heavy=$(cargo tree -p recall-verifier -e normal --all-features --prefix none |
    grep -iE '^(tokio-postgres|deadpool|postgres|redis|argon2|rusqlite|libsqlite3-sys|refinery) ' || true)
  if [ -n "$heavy" ]; then
    echo "recall-verifier depends on: $heavy" >&2
    return 1
  fi
}
step "verifier dependencies" verifier_is_light
step "test" cargo test --workspace --all-targets -- --test-threads=4
step "schemathesis" bash scripts/schemathesis.sh
# A DPoP client with proofs from joserfc (PyPI), with and without server nonces.
step "dpop client" bash scripts/dpop.sh
# Redis behind Sentinel (Debian's redis-sentinel): a fleet of three follows
# the failover when its primary is killed (tests/api/sentinel.rs).
step "sentinel" bash scripts/sentinel.sh
# A plain PHP API (Debian's php-fpm, nginx, the sidecar, introspection): docs/PHP.md.
step "php" bash scripts/php.sh
# PostgreSQL failover under load: a primary and its synchronous standby
# (two throwaway clusters on ports 5441 and 5442), the primary stopped
# mid-run and the standby promoted (scripts/failover.sh runs 30 s on
# release; here the debug build the other steps have). Twice: the primary
# crashing (-m immediate), and a switchover where it stays up read-only, so
# the pooled connections to it must be dropped for the new primary.
failover_short() {
  local mode=$1 report rc=0
  report=$(mktemp /tmp/recall-failover.XXXXXX.json)
  FAILOVER_STOP_MODE=$mode FAILOVER_PROFILE=debug FAILOVER_JSON=$report \
    bash scripts/failover.sh "${TEST_FAILOVER_SECS:-24}" || rc=$?
  rm -f "$report"
  return "$rc"
}
step "failover" failover_short immediate
step "failover (read-only switchover)" failover_short readonly
# Headless Chromium (Debian's) through playwright-core: the pages' flows.
step "browser" bash scripts/browser.sh
# A short soak with chaos (scripts/soak.sh runs 10 minutes on release).
soak_short() {
  local report rc=0
  report=$(mktemp /tmp/recall-soak.XXXXXX.md)
  SOAK_PROFILE=debug SOAK_REPORT=$report bash scripts/soak.sh "${TEST_SOAK_SECS:-60}" || rc=$?
  if [ "$rc" -ne 0 ]; then
    cat "$report" >&2 || true
  fi
  rm -f "$report"
  return "$rc"
}
step "soak" soak_short
# A short run of every fuzz target (scripts/fuzz.sh runs longer ones; the
# cold nightly build of the targets is most of this step).
step "fuzz" env FUZZ_SECS="${TEST_FUZZ_SECS:-10}" bash scripts/fuzz.sh
log "all checks passed ($((SECONDS - total_started))s)"
