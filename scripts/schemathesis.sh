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

work=$(mktemp -d /tmp/recall-st.XXXXXX)
cleanup() {
  stop_recall
  rm -rf "$work"
}
trap cleanup EXIT
admin_token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
start_recall "$work" RECALL_ADMIN_TOKEN="$admin_token"
base=$RECALL_BASE

# Credentials come from scripts/schemathesis_hooks.py: admin operations
# use the bootstrap admin token, user operations fresh users (the run logs
# its users out). The hooks also put back each client policy the run sets
# (a random valid one, e.g. binding dpop on web, would break every later
# login), which relies on --workers 1: nothing runs between a PUT and that.
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
