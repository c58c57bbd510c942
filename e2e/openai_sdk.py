"""Drive keyward's OpenAI-compatible relay with the official OpenAI Python SDK.

Usage:
    KEYWARD_TOKEN=<access_key:secret> .venv/bin/python e2e/openai_sdk.py \
        --base-url http://127.0.0.1:PORT/v1 --chat-model MODEL --embed-model MODEL \
        [--missing-model NAME] [--embeddings-refused]

Every option may also come from the environment: KEYWARD_BASE_URL, KEYWARD_TOKEN (or --api-key, but
the environment keeps the token out of the process list), KEYWARD_CHAT_MODEL, KEYWARD_EMBED_MODEL,
KEYWARD_MISSING_MODEL.

Makes, with `openai.OpenAI(base_url=..., api_key=...)`: one chat completion, one streamed chat
completion (chunks collected), one embedding, and one call naming a model that does not exist
(expected to raise `openai.NotFoundError`). With --embeddings-refused the embedding call is expected
to raise `openai.BadRequestError` (a factory that serves no embeddings) and what it raised is
reported instead. Prints ONE JSON object with what came back on stdout and
exits 0 when every step ran (the caller judges the results); a step that raised something unexpected
is reported in the object under "errors" and makes the exit status 1.

Nothing is scrubbed: what the SDK raised and returned is printed as it is, so the caller's leak scan
sees exactly what a user of the SDK would. With --traffic FILE (or KEYWARD_SDK_TRAFFIC) every HTTP
response the SDK received is appended to FILE as it arrives: a `--- METHOD PATH -> STATUS` line,
the header lines, then the body bytes exactly as read (streamed bodies chunk by chunk, without
delaying them).
"""

import argparse
import json
import os
import sys
import time
import traceback


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", default=os.environ.get("KEYWARD_BASE_URL"))
    p.add_argument("--api-key", default=os.environ.get("KEYWARD_TOKEN"))
    p.add_argument("--chat-model", default=os.environ.get("KEYWARD_CHAT_MODEL"))
    p.add_argument("--embed-model", default=os.environ.get("KEYWARD_EMBED_MODEL"))
    p.add_argument(
        "--missing-model",
        default=os.environ.get("KEYWARD_MISSING_MODEL", "no-such-model@OpenAI-API-Compatible"),
    )
    p.add_argument("--embeddings-refused", action="store_true")
    p.add_argument("--prompt", default="hello from the python sdk")
    p.add_argument("--traffic", default=os.environ.get("KEYWARD_SDK_TRAFFIC"))
    p.add_argument("--timeout", type=float, default=30.0)
    a = p.parse_args()
    missing = [n for n in ("base_url", "api_key", "chat_model", "embed_model") if not getattr(a, n)]
    if missing:
        p.error("missing: " + ", ".join(missing))
    return a


def RecordingTransport(httpx2, path):
    """A transport that appends every response (status, headers, body as read) to `path`."""

    class Tee(httpx2.SyncByteStream):
        def __init__(self, inner, sink):
            self.inner, self.sink = inner, sink

        def __iter__(self):
            for chunk in self.inner:
                self.sink.write(chunk)
                self.sink.flush()
                yield chunk

        def close(self):
            self.inner.close()

    class Recording(httpx2.BaseTransport):
        def __init__(self):
            self.inner = httpx2.HTTPTransport()
            self.sink = open(path, "ab")

        def handle_request(self, request):
            resp = self.inner.handle_request(request)
            self.sink.write(f"\n--- {request.method} {request.url.raw_path.decode()} -> {resp.status_code}\n".encode())
            for name, value in resp.headers.raw:
                self.sink.write(name + b": " + value + b"\n")
            self.sink.write(b"\n")
            return httpx2.Response(
                status_code=resp.status_code,
                headers=resp.headers,
                stream=Tee(resp.stream, self.sink),
                extensions=resp.extensions,
            )

        def close(self):
            self.inner.close()
            self.sink.close()

    return Recording()


def main():
    args = parse_args()
    import openai

    out = {"sdk_version": openai.__version__, "errors": {}}
    http_client = None
    if args.traffic:
        import httpx2

        # identity: the recording holds the bytes as sent, readable without decompressing.
        http_client = httpx2.Client(
            transport=RecordingTransport(httpx2, args.traffic),
            headers={"accept-encoding": "identity"},
        )
    client = openai.OpenAI(
        base_url=args.base_url,
        api_key=args.api_key,
        max_retries=0,
        timeout=args.timeout,
        http_client=http_client,
    )

    def step(name, fn):
        started = time.monotonic()
        try:
            out[name] = fn()
        except Exception as e:  # reported, not raised: the caller asserts on the JSON
            out["errors"][name] = f"{type(e).__name__}: {e}"
            out[name] = None
            tb = traceback.format_exc()
            sys.stderr.write(f"openai_sdk.py: step {name} failed:\n{tb}\n")
        if isinstance(out.get(name), dict):
            out[name]["elapsed_ms"] = round((time.monotonic() - started) * 1000)

    def chat():
        r = client.chat.completions.create(
            model=args.chat_model,
            messages=[{"role": "user", "content": args.prompt}],
        )
        return {
            "type": type(r).__name__,
            "id": r.id,
            "object": r.object,
            "model": r.model,
            "content": r.choices[0].message.content,
            "role": r.choices[0].message.role,
            "finish_reason": r.choices[0].finish_reason,
            "usage": r.usage.model_dump() if r.usage is not None else None,
        }

    def stream():
        chunks = 0
        objects = set()
        parts = []
        finish = None
        usage = None
        first_at = last_at = None
        s = client.chat.completions.create(
            model=args.chat_model,
            messages=[{"role": "user", "content": args.prompt + " streamed"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in s:
            now = time.monotonic()
            first_at = first_at if first_at is not None else now
            last_at = now
            chunks += 1
            objects.add(chunk.object)
            if chunk.usage is not None:
                usage = chunk.usage.model_dump()
            for c in chunk.choices:
                if c.delta is not None and c.delta.content:
                    parts.append(c.delta.content)
                if c.finish_reason:
                    finish = c.finish_reason
        return {
            "chunks": chunks,
            "objects": sorted(objects),
            "content": "".join(parts),
            "content_parts": len(parts),
            "finish_reason": finish,
            "usage": usage,
            "spread_ms": round(((last_at or 0) - (first_at or 0)) * 1000),
        }

    def embeddings_refused():
        try:
            client.embeddings.create(model=args.embed_model, input=["first text"])
        except openai.BadRequestError as e:
            body = e.body if isinstance(e.body, dict) else {}
            return {
                "raised": type(e).__name__,
                "status_code": e.status_code,
                "type": body.get("type", getattr(e, "type", None)),
                "message": body.get("message", str(e)),
            }
        raise AssertionError("the embedding call was not refused")

    def embeddings():
        if args.embeddings_refused:
            return embeddings_refused()
        r = client.embeddings.create(model=args.embed_model, input=["first text", "second text here"])
        return {
            "type": type(r).__name__,
            "object": r.object,
            "count": len(r.data),
            "indexes": [d.index for d in r.data],
            "dims": [len(d.embedding) for d in r.data],
            "all_floats": all(isinstance(x, float) for d in r.data for x in d.embedding),
            "usage": r.usage.model_dump() if r.usage is not None else None,
        }

    def not_found():
        try:
            client.chat.completions.create(
                model=args.missing_model,
                messages=[{"role": "user", "content": "x"}],
            )
        except openai.NotFoundError as e:
            body = e.body if isinstance(e.body, dict) else {}
            return {
                "raised": type(e).__name__,
                "status_code": e.status_code,
                "code": body.get("code", getattr(e, "code", None)),
                "type": body.get("type", getattr(e, "type", None)),
                "message": body.get("message", str(e)),
            }
        except openai.APIStatusError as e:
            return {"raised": type(e).__name__, "status_code": e.status_code, "message": str(e)}
        return {"raised": None}

    step("chat", chat)
    step("stream", stream)
    step("embeddings", embeddings)
    step("not_found", not_found)

    print(json.dumps(out, sort_keys=True))
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
