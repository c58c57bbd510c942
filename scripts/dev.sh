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
# A default provider (DEFAULT_LLM_* in wrangler.toml or .dev.vars) that is set but unusable makes
# every tenant creation a 500: say so as soon as the worker answers. The worker itself judges it
# (GET /api/v1/admin/default_provider), so the warning names exactly what creation will refuse.
warn_if_default_provider_invalid() {
  local base="http://127.0.0.1:$PORT" problem
  for _ in $(seq 1 600); do
    if curl -fsS -o /dev/null "$base/health" 2>/dev/null; then
      problem=$(curl -fsS -H "Authorization: Bearer $ADMIN_TOKEN" "$base/api/v1/admin/default_provider" 2>/dev/null |
        node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
          try { const d = JSON.parse(s).data; if (d && d.problem) console.log(d.problem); } catch {}
        })')
      if [ -n "$problem" ]; then
        printf '\n  WARNING: the default provider (DEFAULT_LLM_*) is set but invalid, so creating a tenant\n' >&2
        printf '  is refused until it is corrected: %s\n\n' "$problem" >&2
      fi
      return 0
    fi
    sleep 1
  done
}
warn_if_default_provider_invalid &
# Loopback is allowed in provider URLs here (a local Ollama or stand-in); deployments allow none
# unless PROVIDER_PRIVATE_ADDRESSES says so.
exec wrangler dev --local --ip 127.0.0.1 --port "$PORT" --test-scheduled \
  --show-interactive-dev-session=false --var PROVIDER_PRIVATE_ADDRESSES:loopback
