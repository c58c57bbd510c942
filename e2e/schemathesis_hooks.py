"""Schemathesis hooks for e2e/contract.test.mjs (loaded through SCHEMATHESIS_HOOKS).

1. Keep the run's own credential alive. Schemathesis learns the calling key's id from
   GET /api/v1/me or GET /api/v1/api_keys (stateful links, or by chance) and would then rotate or
   delete it, turning every later request of the run into a 401. Requests that target one of the
   ids in KEYWARD_ST_PROTECTED_IDS (comma-separated) under /api/v1/api_keys/ are sent to an id
   that does not exist instead (a 404, still checked against the document).
2. Record every 5xx answer, with its body, as one JSON line in KEYWARD_ST_5XX_LOG, so the test can
   tell a 500 (a bug) from a documented 502 (a provider that cannot be reached) and quote it.
"""

import json
import os

import schemathesis

PROTECTED = {v for v in os.environ.get("KEYWARD_ST_PROTECTED_IDS", "").split(",") if v}
REPLACEMENT_ID = "st-protected-key-id-not-used"
LOG_5XX = os.environ.get("KEYWARD_ST_5XX_LOG")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    params = case.path_parameters
    if not PROTECTED or not params:
        return
    if case.path.startswith("/api/v1/api_keys/") and params.get("id") in PROTECTED:
        params["id"] = REPLACEMENT_ID


@schemathesis.hook
def after_call(ctx, case, response):
    if LOG_5XX and response.status_code >= 500:
        body = response.text_lossy()
        entry = {
            "method": case.method,
            "path": case.formatted_path,
            "query": case.query or {},
            "status": response.status_code,
            "body": body[:2000],
        }
        with open(LOG_5XX, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, default=str) + "\n")
