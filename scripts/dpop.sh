#!/usr/bin/env bash
# Runs scripts/dpop_client.py, a DPoP (RFC 9449) client whose proofs are
# made by joserfc (PyPI), against a live Recall on the embedded store:
# once as configured by default, once with RECALL_DPOP_NONCE=true (the
# client must then follow Recall's use_dpop_nonce challenges). Any failed
# check fails the script.
#
#   scripts/dpop.sh            # as scripts/test.sh runs it
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh

JOSERFC_VERSION=1.6.5

if ! python3 -c "import joserfc, sys; sys.exit(joserfc.__version__ != '$JOSERFC_VERSION')" 2>/dev/null; then
  log "installing joserfc $JOSERFC_VERSION from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check "joserfc==$JOSERFC_VERSION" ||
    die "pip could not install joserfc $JOSERFC_VERSION"
fi

work=$(mktemp -d /tmp/recall-dpop.XXXXXX)
cleanup() {
  stop_recall
  rm -rf "$work"
}
trap cleanup EXIT

# One run: a fresh Recall (its own data directory) with SETTINGS, then the
# client with CLIENT_ARGS.
run() {
  local name=$1 client_args=$2
  shift 2
  local admin_token
  admin_token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  mkdir -p "$work/$name"
  start_recall "$work/$name" RECALL_ADMIN_TOKEN="$admin_token" "$@"
  log "dpop client ($name) against $RECALL_BASE"
  # shellcheck disable=SC2086 # client_args is a list of flags
  if ! python3 scripts/dpop_client.py "$RECALL_BASE" "$admin_token" $client_args; then
    log "Recall's log ($name), last lines:"
    tail -n 20 "$work/$name/recall.log" >&2 || true
    die "dpop client ($name) failed"
  fi
  stop_recall
  RECALL_PID=
}

run default ""
run nonces "--expect-nonce" RECALL_DPOP_NONCE=true
log "dpop client: every check passed, with and without server nonces"
