"""Speech-to-text, text-to-speech and an image chat through keyward's relay with the official
OpenAI Python SDK.

Usage:
    KEYWARD_TOKEN=<access_key:secret> .venv/bin/python e2e/openai_sdk_audio.py \
        --base-url http://127.0.0.1:PORT/v1 --asr-model MODEL --tts-model MODEL [--image-model MODEL]

Options may also come from the environment: KEYWARD_BASE_URL, KEYWARD_TOKEN.

Makes `client.audio.transcriptions.create` with a 3000-byte file (bytes 0..255 repeated, so any
lossy copy on the way shows in the transcript the stand-in writes), once as JSON and once as text;
`client.audio.speech.create` read with `with_streaming_response` chunk by chunk; and, with
--image-model, a chat completion with an image content part. Prints ONE JSON object with what came
back and exits 0 when every step ran (the caller judges the results); a step that raised is
reported under "errors" and makes the exit status 1.
"""

import argparse
import base64
import io
import json
import os
import sys
import traceback

AUDIO = bytes(i % 256 for i in range(3000))
# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", default=os.environ.get("KEYWARD_BASE_URL"))
    p.add_argument("--api-key", default=os.environ.get("KEYWARD_TOKEN"))
    p.add_argument("--asr-model", required=True)
    p.add_argument("--tts-model", required=True)
    p.add_argument("--image-model")
    p.add_argument("--timeout", type=float, default=30.0)
    a = p.parse_args()
    missing = [n for n in ("base_url", "api_key") if not getattr(a, n)]
    if missing:
        p.error("missing: " + ", ".join(missing))
    return a


def main():
    args = parse_args()
    import openai

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=args.timeout)
    out = {"sdk_version": openai.__version__, "errors": {}}

    def step(name, fn):
        try:
            out[name] = fn()
        except Exception as e:  # reported, judged by the caller
            out["errors"][name] = f"{type(e).__name__}: {e}"
            traceback.print_exc(file=sys.stderr)

    def transcription():
        r = client.audio.transcriptions.create(
            model=args.asr_model, file=("clip.wav", io.BytesIO(AUDIO), "audio/wav"), language="en"
        )
        return {"type": type(r).__name__, "text": r.text}

    def transcription_text():
        r = client.audio.transcriptions.create(
            model=args.asr_model, file=("clip.wav", io.BytesIO(AUDIO), "audio/wav"), response_format="text"
        )
        return {"type": type(r).__name__, "text": r}

    def speech():
        chunks = []
        with client.audio.speech.with_streaming_response.create(
            model=args.tts_model, voice="alloy", input="hello from the python sdk"
        ) as r:
            content_type = r.headers.get("content-type")
            for chunk in r.iter_bytes():
                chunks.append(chunk)
        audio = b"".join(chunks)
        return {
            "content_type": content_type,
            "bytes": len(audio),
            "head": audio[:3].decode("latin-1"),
            "has_input": b"hello from the python sdk" in audio,
        }

    def image_chat():
        url = "data:image/png;base64," + base64.b64encode(PNG).decode()
        r = client.chat.completions.create(
            model=args.image_model,
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": url}},
            ]}],
        )
        return {"type": type(r).__name__, "content": r.choices[0].message.content, "usage": r.usage.model_dump()}

    step("transcription", transcription)
    step("transcription_text", transcription_text)
    step("speech", speech)
    if args.image_model:
        step("image_chat", image_chat)
    print(json.dumps(out))
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
