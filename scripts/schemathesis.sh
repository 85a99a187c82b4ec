#!/usr/bin/env bash
# Runs schemathesis (PyPI) against a live Recall with every check on, using
# the OpenAPI document Recall serves: schema-valid requests must be
# accepted, invalid ones rejected, every answer must match its declared
# status, content type, headers and schema, and undeclared methods must get
# 405 with Allow. Admin and user credentials are supplied per security
# scheme. Zero failures or the script fails.
#
#   scripts/schemathesis.sh            # as scripts/test.sh runs it
#   ST_MAX_EXAMPLES=200 scripts/schemathesis.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh

ST_VERSION=4.32.5
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-40}

if ! command -v st >/dev/null 2>&1 || ! st --version 2>/dev/null | grep -q "$ST_VERSION"; then
  log "installing schemathesis $ST_VERSION from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION" ||
    die "pip could not install schemathesis $ST_VERSION"
fi
ST=$(command -v st) || die "schemathesis installed but st is not on PATH"

cargo build --quiet --bin recall
work=$(mktemp -d /tmp/recall-st.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
admin_token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

RECALL_BIND="127.0.0.1:$port" RECALL_DATA_DIR="$work/data" RECALL_ADMIN_TOKEN="$admin_token" \
  RECALL_RATE_LIMIT_PER_MIN=100000 RUST_LOG=warn \
  "${CARGO_TARGET_DIR:-target}/debug/recall" >"$work/recall.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

up() { curl -fsS "$base/readyz" >/dev/null 2>&1; }
wait_until up "Recall on $base" " (log: $(tail -n 5 "$work/recall.log" 2>/dev/null))"

# Credentials come from scripts/schemathesis_hooks.py: admin operations
# use the bootstrap admin token, user operations fresh users (the run logs
# its users out).
log "schemathesis $ST_VERSION: every check, $MAX_EXAMPLES examples per operation"
# The live streams never end, by design: they are tested in
# tests/api/admin_auth.rs and tests/api/feed.rs instead.
RECALL_ST_BASE=$base RECALL_ST_ADMIN_TOKEN=$admin_token PYTHONPATH=scripts SCHEMATHESIS_HOOKS=schemathesis_hooks \
  "$ST" --config-file scripts/schemathesis.toml run "$base/openapi.json" \
  --checks all \
  --exclude-path /v1/admin/events/stream \
  --exclude-path /v1/revocations/stream \
  --max-examples "$MAX_EXAMPLES" \
  --workers 1 \
  --seed "${ST_SEED:-1}" \
  --request-timeout 10 \
  --no-color
