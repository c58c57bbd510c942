"""A tool-call round trip through keyward's relay with the official OpenAI Python SDK.

Usage:
    KEYWARD_TOKEN=<access_key:secret> .venv/bin/python e2e/openai_sdk_tools.py \
        --base-url http://127.0.0.1:PORT/v1 --chat-model MODEL

Options may also come from the environment: KEYWARD_BASE_URL, KEYWARD_TOKEN, KEYWARD_CHAT_MODEL.

Twice, once whole and once streamed: offers a `get_weather` tool with `tool_choice="required"`,
reads the tool call the model makes (streamed: assembled from the `tool_calls` deltas by index),
answers it with a `tool` message carrying the call's id, and reads the model's final answer.
Prints ONE JSON object with what came back and exits 0 when every step ran (the caller judges
the results); a step that raised is reported under "errors" and makes the exit status 1.
"""

import argparse
import json
import os
import sys
import traceback

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
RESULT = "18 C, sunny"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", default=os.environ.get("KEYWARD_BASE_URL"))
    p.add_argument("--api-key", default=os.environ.get("KEYWARD_TOKEN"))
    p.add_argument("--chat-model", default=os.environ.get("KEYWARD_CHAT_MODEL"))
    p.add_argument("--timeout", type=float, default=30.0)
    a = p.parse_args()
    missing = [n for n in ("base_url", "api_key", "chat_model") if not getattr(a, n)]
    if missing:
        p.error("missing: " + ", ".join(missing))
    return a


def main():
    args = parse_args()
    import openai

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=args.timeout)
    out = {"sdk_version": openai.__version__, "errors": {}}
    ask = {"role": "user", "content": "Paris"}

    def answer(calls):
        """The history that answers `calls` (dicts with id, name, arguments) with RESULT."""
        assistant = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in calls
            ],
        }
        results = [{"role": "tool", "tool_call_id": c["id"], "content": RESULT} for c in calls]
        return [ask, assistant, *results]

    def whole():
        r = client.chat.completions.create(
            model=args.chat_model, messages=[ask], tools=TOOLS, tool_choice="required"
        )
        m = r.choices[0].message
        calls = [
            {"id": c.id, "type": c.type, "name": c.function.name, "arguments": c.function.arguments}
            for c in (m.tool_calls or [])
        ]
        final = client.chat.completions.create(model=args.chat_model, messages=answer(calls), tools=TOOLS)
        return {
            "finish_reason": r.choices[0].finish_reason,
            "calls": calls,
            "parsed_arguments": [json.loads(c["arguments"]) for c in calls],
            "final_content": final.choices[0].message.content,
            "final_finish_reason": final.choices[0].finish_reason,
        }

    def streamed():
        calls = {}  # index -> {id, name, arguments}
        deltas = 0
        finish = None
        text = []
        s = client.chat.completions.create(
            model=args.chat_model, messages=[ask], tools=TOOLS, tool_choice="required", stream=True
        )
        for chunk in s:
            for c in chunk.choices:
                if c.delta and c.delta.content:
                    text.append(c.delta.content)
                for d in (c.delta.tool_calls or []) if c.delta else []:
                    deltas += 1
                    call = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
                    if d.id:
                        call["id"] = d.id
                    if d.function and d.function.name:
                        call["name"] = d.function.name
                    if d.function and d.function.arguments:
                        call["arguments"] += d.function.arguments
                if c.finish_reason:
                    finish = c.finish_reason
        ordered = [calls[i] for i in sorted(calls)]
        parts = []
        final_finish = None
        s = client.chat.completions.create(
            model=args.chat_model, messages=answer(ordered), tools=TOOLS, stream=True
        )
        for chunk in s:
            for c in chunk.choices:
                if c.delta and c.delta.content:
                    parts.append(c.delta.content)
                if c.finish_reason:
                    final_finish = c.finish_reason
        return {
            "finish_reason": finish,
            "indexes": sorted(calls),
            "tool_call_deltas": deltas,
            "text": "".join(text),
            "calls": ordered,
            "parsed_arguments": [json.loads(c["arguments"]) for c in ordered],
            "final_content": "".join(parts),
            "final_finish_reason": final_finish,
        }

    for name, fn in (("whole", whole), ("streamed", streamed)):
        try:
            out[name] = fn()
        except Exception as e:  # reported, not raised: the caller asserts on the JSON
            out["errors"][name] = f"{type(e).__name__}: {e}"
            out[name] = None
            sys.stderr.write(f"openai_sdk_tools.py: step {name} failed:\n{traceback.format_exc()}\n")

    print(json.dumps(out, sort_keys=True))
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
