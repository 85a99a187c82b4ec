#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of Recall's untrusted-input
# parsers: access tokens, JSON request bodies, Redis notices, stored event
# payloads and the verifier's revocation feed (fuzz/README.md). Each target
# runs for FUZZ_SECS seconds, one after another (never in parallel), seeded
# from the committed corpus fuzz/corpus/<target>/, which is only read: what
# libFuzzer finds goes to a temporary directory. Any crash, panic, leak,
# timeout or out-of-memory fails the script, naming the input to reproduce.
#
#   scripts/fuzz.sh                          # every target, 60 s each
#   FUZZ_SECS=300 scripts/fuzz.sh token feed # some targets, longer
#   FUZZ_KEEP=1 scripts/fuzz.sh              # keep the new corpus files
#
# Needs the nightly toolchain; installs cargo-fuzz if it is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh

FUZZ_SECS=${FUZZ_SECS:-60}
RSS_LIMIT_MB=2048
# A single input running this long is a hang, and a failure.
UNIT_TIMEOUT_SECS=10

case $FUZZ_SECS in
'' | *[!0-9]*) die "FUZZ_SECS must be a whole number of seconds, not '$FUZZ_SECS'" ;;
esac

# CI shells may not have run rustup's profile script.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH"
cargo +nightly --version >/dev/null 2>&1 ||
  die "the nightly toolchain is missing (rustup toolchain install nightly)"

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked || die "cargo install cargo-fuzz failed"
fi

mapfile -t all_targets < <(cargo +nightly fuzz list)
[ "${#all_targets[@]}" -gt 0 ] || die "cargo fuzz list found no target in fuzz/"
if [ "$#" -gt 0 ]; then
  targets=("$@")
  for t in "${targets[@]}"; do
    printf '%s\n' "${all_targets[@]}" | grep -qx -- "$t" ||
      die "no fuzz target '$t' (targets: ${all_targets[*]})"
  done
else
  targets=("${all_targets[@]}")
fi

work=$(mktemp -d /tmp/recall-fuzz.XXXXXX)
cleanup() {
  if [ "${FUZZ_KEEP:-0}" = 1 ]; then
    log "new corpus files kept in $work/corpus"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

log "cargo $(cargo +nightly --version | cut -d' ' -f2-) / $(cargo fuzz --version)"
started=$SECONDS
cargo +nightly fuzz build || die "cargo fuzz build failed"
log "built ${#targets[@]} targets in $((SECONDS - started))s"

# Prints "<key> <value>" from libFuzzer's final stats in a log.
final_stat() { sed -n "s/^stat::$2: *//p" "$1" | tail -n 1; }

failed=()
for t in "${targets[@]}"; do
  seeds=fuzz/corpus/$t
  [ -d "$seeds" ] || die "no seed corpus $seeds"
  out=$work/corpus/$t
  mkdir -p "$out" fuzz/artifacts/"$t"
  # The inputs of bugs found and fixed are replayed first, every run.
  for r in fuzz/regressions/"$t"-*; do
    [ -f "$r" ] && cp "$r" "$out/"
  done
  marker=$work/$t.start
  touch "$marker"
  dict=()
  [ -f "fuzz/dicts/$t.dict" ] && dict=("-dict=fuzz/dicts/$t.dict")
  log "$t: ${FUZZ_SECS}s from $(find "$seeds" -type f | wc -l) seeds"
  rc=0
  # The first corpus directory takes what libFuzzer finds; the committed
  # seeds are only read. The build above is reused.
  cargo +nightly fuzz run "$t" "$out" "$seeds" -- \
    -max_total_time="$FUZZ_SECS" \
    -rss_limit_mb="$RSS_LIMIT_MB" \
    -timeout="$UNIT_TIMEOUT_SECS" \
    -print_final_stats=1 \
    "${dict[@]}" \
    >"$work/$t.log" 2>&1 || rc=$?
  runs=$(final_stat "$work/$t.log" number_of_executed_units)
  speed=$(final_stat "$work/$t.log" average_exec_per_sec)
  found=$(final_stat "$work/$t.log" new_units_added)
  cov=$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -n 1 | cut -d' ' -f2)
  if [ "$rc" -eq 0 ]; then
    log "$t: ok: ${runs:-?} runs, ${speed:-?} exec/s, cov ${cov:-?}, ${found:-0} new inputs"
    continue
  fi
  failed+=("$t")
  printf '==> [%s] FAILED: %s (exit %d after %s runs)\n' "$(date +%H:%M:%S)" "$t" "$rc" "${runs:-?}" >&2
  # The panic or sanitizer report, and the input that caused it.
  grep -m 1 -B 2 -A 15 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|==ERROR" \
    "$work/$t.log" >&2 || tail -n 40 "$work/$t.log" >&2
  artifacts=$(find "fuzz/artifacts/$t" -type f -newer "$marker" 2>/dev/null || true)
  if [ -n "$artifacts" ]; then
    while read -r a; do
      printf '==> crashing input: %s\n    reproduce: cargo +nightly fuzz run %s %s\n' "$a" "$t" "$a" >&2
    done <<<"$artifacts"
  else
    printf '==> no artifact written; full log: %s\n' "$work/$t.log" >&2
    FUZZ_KEEP=1
  fi
done

[ "${#failed[@]}" -eq 0 ] || die "fuzz targets failed: ${failed[*]}"
log "fuzzing: ${#targets[@]} targets, ${FUZZ_SECS}s each: ok ($((SECONDS - started))s)"
