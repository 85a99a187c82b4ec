#!/usr/bin/env bash
# Recall's pages in a real browser: Debian's Chromium, headless, driven by
# playwright-core from npm (tests/browser/flows.test.mjs). Never a
# downloaded browser build. Installs Chromium (apt) and playwright-core
# (npm ci) when missing, starts one Recall on the embedded store with an
# admin user made by the CLI, and runs the flows. Screenshots of /account
# and /admin go to $RECALL_SCREENSHOTS (default target/screenshots).
#
#   scripts/browser.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh

ensure_package chromium chromium
command -v node >/dev/null 2>&1 || ensure_package node nodejs
command -v npm >/dev/null 2>&1 || ensure_package npm npm
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  log "installing playwright-core (npm ci)"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error) ||
    die "npm could not install playwright-core"
fi

cargo build --quiet --bin recall
work=$(mktemp -d /tmp/recall-browser.XXXXXX)
cleanup() {
  stop_recall
  rm -rf "$work"
}
trap cleanup EXIT
admin_password="admin password $(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
shots=${RECALL_SCREENSHOTS:-$PWD/target/screenshots}

# An admin user, made by the CLI on the store the server then opens.
printf '%s\n' "$admin_password" |
  RECALL_DATA_DIR="$work/data" "${CARGO_TARGET_DIR:-target}/debug/recall" admin create-user webadmin --admin \
    >"$work/cli.log" 2>&1 || die "recall admin create-user failed: $(cat "$work/cli.log")"

# The public URL is the address the browser uses (the cookie routes check
# Origin against it); a short access-token life, so that the flows see
# silent renewal.
RECALL_PORT=$(free_port)
base="http://127.0.0.1:$RECALL_PORT"
start_recall "$work" RECALL_PUBLIC_URL="$base" RECALL_ACCESS_TTL_SECS=10

log "browser flows in $(chromium --version 2>/dev/null || echo chromium) at $base"
RECALL_BASE=$base RECALL_WEB_ADMIN=webadmin RECALL_WEB_ADMIN_PASSWORD=$admin_password \
  RECALL_SCREENSHOTS=$shots CHROMIUM=$(command -v chromium) \
  node --test --test-concurrency=1 --test-reporter=spec tests/browser/flows.test.mjs ||
  die "browser flows failed (Recall's log: $(tail -n 20 "$work/recall.log"))"
log "screenshots: $shots/account.png, $shots/admin.png"
