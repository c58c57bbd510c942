"""What the official OpenAI Python SDK raises for each failing relay call.

Usage:
    KEYWARD_TOKEN=<access_key:secret> .venv/bin/python e2e/openai_sdk_errors.py \
        --base-url http://127.0.0.1:PORT/v1 --cases '[{"name": "m1", "model": "m1"}, ...]'

Each case is a chat completion with `model` (streamed when `"stream": true`); the SDK's retries
are off, so each case is one request. Prints ONE JSON object, case name -> {raised (the
exception class name), bases (its class and every base class up to APIError, most specific
first), status_code, type, code, message, retry_after}; `raised` is null when the call
succeeded. Exit status 0 when every case ran.
"""

import argparse
import json
import os
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", default=os.environ.get("KEYWARD_BASE_URL"))
    p.add_argument("--api-key", default=os.environ.get("KEYWARD_TOKEN"))
    p.add_argument("--cases", required=True, help="JSON list of {name, model, stream?}")
    p.add_argument("--timeout", type=float, default=30.0)
    a = p.parse_args()
    if not a.base_url or not a.api_key:
        p.error("missing --base-url or KEYWARD_TOKEN")
    return a


def main():
    args = parse_args()
    import openai

    client = openai.OpenAI(
        base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=args.timeout
    )
    out = {"sdk_version": openai.__version__}
    for case in json.loads(args.cases):
        result = {"raised": None}
        try:
            r = client.chat.completions.create(
                model=case["model"],
                messages=[{"role": "user", "content": "x"}],
                stream=bool(case.get("stream")),
            )
            if case.get("stream"):
                result["chunks"] = sum(1 for _ in r)
        except openai.APIError as e:
            body = e.body if isinstance(e.body, dict) else {}
            response = getattr(e, "response", None)
            bases = [
                c.__name__
                for c in type(e).__mro__
                if isinstance(c, type) and issubclass(c, openai.APIError)
            ]
            result = {
                "raised": type(e).__name__,
                "bases": bases,
                "status_code": getattr(e, "status_code", None),
                "type": body.get("type", getattr(e, "type", None)),
                "code": body.get("code", getattr(e, "code", None)),
                "message": body.get("message", str(e)),
                "retry_after": response.headers.get("retry-after") if response is not None else None,
            }
        out[case["name"]] = result
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
