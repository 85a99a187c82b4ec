#!/usr/bin/env bash
# The scale curves alone (scripts/bench.sh runs them too): propagation and
# log reads against 3, 10 and 30 in-process instances, start-up and memory
# against 10k, 100k and 1M revoked sessions in the window, appends against
# 1, 8 and 32 writers, refresh throughput per core. Plots PNGs into bench/
# and writes their section of bench/RESULTS.md. Loopback only, bounded.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh
ensure_postgres
ensure_redis
ensure_test_urls
ensure_matplotlib
cargo build --release --quiet --example bench_suite
work=$(mktemp -d /tmp/recall-scale.XXXXXX)
trap 'rm -rf "$work"' EXIT
log "scale curves (a few minutes)"
target/release/examples/bench_suite --dir "$work/tmp" scale "$@" >bench/scale.json
python3 scripts/plot_scale.py bench/scale.json bench
