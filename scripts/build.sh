#!/usr/bin/env bash
# Build the release Worker into build/ and the console into build/console (what `wrangler dev` and
# `wrangler deploy` serve: the worker and its static assets).
# worker-build compiles and binds the wasm; wasm-opt then shrinks it without the names section,
# which worker-build's own pass always keeps (about 140 KiB, and the bundle must stay small).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
worker-build --release
shrink_wasm build/index_bg.wasm
# The console: types generated from src/api/openapi.json, then Vite into build/console (after
# worker-build, which owns build/). Its npm packages are installed by scripts/setup.sh.
[ -d console/node_modules ] || { echo "build: console/node_modules is missing; run \`make setup\`" >&2; exit 1; }
(cd console && npm run --silent build)
