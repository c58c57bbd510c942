#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/ for SECONDS_PER_TARGET seconds each (default 60), one after
# another, and print per target how many inputs it executed and whether it crashed. Exits non-zero
# if any target crashed (a panic, a sanitizer report, a timeout or running out of memory).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Needs the nightly toolchain (sanitizers) and cargo-fuzz; installs whichever is missing. Inputs the
# fuzzer finds go to fuzz/corpus/<target>/ (only the seed-* files there are kept in git); crash
# reproducers go to fuzz/artifacts/<target>/. Replay one with
#   (cd fuzz && cargo +nightly fuzz run <target> artifacts/<target>/<file>)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"

SECONDS_PER_TARGET="${1:-60}"
if ! [[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]  (a positive whole number; default 60)" >&2
  exit 2
fi

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: installing the nightly toolchain" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

cd "$ROOT/fuzz"
# Debug assertions on: integer overflow panics instead of wrapping silently.
FUZZ_FLAGS=(--debug-assertions)
echo "fuzz: building the targets (nightly, address sanitizer)" >&2
cargo +nightly fuzz build "${FUZZ_FLAGS[@]}" >&2

mapfile -t TARGETS < <(cargo +nightly fuzz list)
LOGS="$(mktemp -d)"
trap 'rm -rf "$LOGS"' EXIT

failed=0
summary=()
for target in "${TARGETS[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  before="$(ls "artifacts/$target" | sort)"
  log="$LOGS/$target.log"
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s" >&2
  status=0
  # -timeout: an input running 10 s is a hang; -print_final_stats: the execution count.
  cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  if [[ -z "$execs" ]]; then
    execs="$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#' || true)"
  fi
  corpus="$(ls "corpus/$target" | wc -l | tr -d ' ')"
  new="$(comm -13 <(echo "$before") <(ls "artifacts/$target" | sort) | sed '/^$/d')"
  if [[ $status -ne 0 || -n "$new" ]]; then
    failed=1
    line="$target: CRASH after ${execs:-?} executions (exit $status)"
    for f in $new; do
      line+=$'\n'"    reproducer: fuzz/artifacts/$target/$f"
    done
    summary+=("$line")
    echo "---- $target: last lines of the libFuzzer log ----" >&2
    { grep -vE '^\s+Compiling' "$log" || true; } | tail -n 60 >&2
  else
    summary+=("$target: ${execs:-?} executions in ${SECONDS_PER_TARGET}s, no crash (corpus: $corpus inputs)")
  fi
done

echo
echo "fuzz results (${SECONDS_PER_TARGET}s per target):"
printf '  %s\n' "${summary[@]}"
exit "$failed"
