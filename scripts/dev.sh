#!/usr/bin/env bash
# Serve the worker locally with real local D1 and KV until stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
PORT="${PORT:-8787}"
ADMIN_TOKEN=$(grep '^ADMIN_TOKEN=' .dev.vars | cut -d= -f2-)
cat <<MSG

  keyward is starting at   http://127.0.0.1:$PORT
  admin token (.dev.vars): $ADMIN_TOKEN

  the console:  open http://127.0.0.1:$PORT/ in a browser and sign in with the admin token

  try:  curl -s http://127.0.0.1:$PORT/health
        curl -s -H "Authorization: Bearer $ADMIN_TOKEN" http://127.0.0.1:$PORT/api/v1/admin/tenants

  README.md walks through creating a user and a key, and calling the relay.

MSG
# Loopback is allowed in provider URLs here (a local Ollama or stand-in); deployments allow none
# unless PROVIDER_PRIVATE_ADDRESSES says so.
exec wrangler dev --local --ip 127.0.0.1 --port "$PORT" --test-scheduled \
  --show-interactive-dev-session=false --var PROVIDER_PRIVATE_ADDRESSES:loopback
