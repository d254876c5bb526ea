"""Stream a sound file to ``stream-guard serve`` over the native protocol and print what comes back.

The native protocol (``/v1/stream``) in four steps:

1. connect with the server's bearer token (``Authorization: Bearer ...``; browsers use ``?token=``);
2. send ``{"type": "start", "stream": ID, "sample_rate": HZ, "encoding": "pcm16", "channels": 1}``, receive
   ``{"type": "started"}``;
3. send audio as binary frames (here 20 ms of little-endian 16-bit PCM each, paced in real time unless
   ``--fast``) while reading the events the server sends back: ``score`` per window, ``alert`` when the
   verdict flips, ``map`` columns if ``"emit_map": true``;
4. send ``{"type": "stop"}``; the last event is the ``summary``.

Usage::

    stream-guard serve --no-auth &                      # or --token SECRET
    python examples/native_client.py call.wav [--url ws://127.0.0.1:8765/v1/stream] [--token SECRET] [--fast]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import numpy as np
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def stream_file(path: str, url: str, token: str | None, fast: bool) -> int:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    pcm = (np.clip(audio.mean(axis=1), -1.0, 1.0) * 32767).astype("<i2").tobytes()
    frame = rate // 50 * 2  # 20 ms of 16-bit samples
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with connect(url, additional_headers=headers, proxy=None) as ws:
        await ws.send(
            json.dumps({"type": "start", "stream": "example", "sample_rate": rate, "encoding": "pcm16"})
        )
        print(await ws.recv())  # {"type": "started", ...}

        async def send() -> None:
            t0 = time.monotonic()
            for i, offset in enumerate(range(0, len(pcm), frame)):
                if not fast:
                    await asyncio.sleep(max(0.0, t0 + i * 0.02 - time.monotonic()))
                await ws.send(pcm[offset : offset + frame])
            await ws.send(json.dumps({"type": "stop"}))

        sender = asyncio.create_task(send())
        async for message in ws:
            event = json.loads(message)
            if event["type"] == "score":
                p, smoothed = event["probability"], event["smoothed"]
                print(f"{event['end_s']:7.2f}s  p={p:.2f}  smoothed={smoothed:.2f}  {event['verdict']}")
            elif event["type"] != "map":
                print(json.dumps(event))
            if event["type"] == "summary":
                break
        await sender
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Stream a file to stream-guard serve (native protocol).")
    parser.add_argument("file", help="any file soundfile reads (WAV, FLAC, OGG)")
    parser.add_argument("--url", default="ws://127.0.0.1:8765/v1/stream")
    parser.add_argument("--token", default=None, help="bearer token (omit when the server runs --no-auth)")
    parser.add_argument(
        "--fast", action="store_true", help="send as fast as possible instead of in real time"
    )
    args = parser.parse_args()
    try:
        return asyncio.run(stream_file(args.file, args.url, args.token, args.fast))
    except sf.LibsndfileError as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
    except InvalidStatus as exc:
        print(f"error: server refused the connection (HTTP {exc.response.status_code})", file=sys.stderr)
    except ConnectionClosed as exc:
        code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else ("", "")
        print(f"error: connection closed: {code} {reason}", file=sys.stderr)
    except OSError as exc:
        print(f"error: cannot connect to {args.url} ({exc.strerror or exc})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
