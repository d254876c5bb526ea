"""Load benchmark: N concurrent Twilio-shaped calls in real time against ``stream-guard serve``.

The server runs as its own process (``stream-guard serve --no-auth`` on loopback), so its CPU and memory are
measured apart from this load generator. Each call is a Twilio Media Streams session (``connected``,
``start``, one 20 ms mu-law ``media`` message every 20 ms, ``stop``), paced against the wall clock; calls
start staggered over ``--stagger`` seconds as independent calls would. A ``/v1/events`` subscriber receives
every score.

Measured:

- **window latency** (the figure that matters for a live call): from the moment the load generator sent the
  media message carrying a window's last sample to the moment that window's score event arrived on
  ``/v1/events`` (same process, same monotonic clock), p50/p95/p99/max over all windows of all calls; the
  engine's own ``latency_ms`` (last sample accepted -> score ready, inside the server) alongside;
- time to first score per call; windows scored; windows dropped (summaries and the server's counter);
  late media sends (the generator's own lag, so an overloaded generator is visible and not blamed on the
  server);
- server CPU (% of one core, mean over the steady part) and RSS (peak), load generator CPU, machine load.

``--silent-share 0.4`` makes every call pause like a real one (40 % of it line noise at -65 dBFS, in 3 s
pauses at a per-call phase): windows inside pauses abstain (``no_speech``) and, unless the server scores
abstaining windows, cost no inference; their events (score ``null``) are counted apart from the latencies,
which cover scored windows only.

Results go to ``benchmarks/results/telephony_load.json``. Run from a source checkout::

    .venv/bin/python benchmarks/telephony_load.py --calls 100 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import soundfile as sf
import soxr
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from stream_guard.core.formats import AudioFormat, encode

FRAME = 160  # 20 ms of 8 kHz mu-law
ROOT = Path(__file__).resolve().parent.parent


def call_audio(seconds: float, silent_share: float = 0.0, seed: int = 0) -> bytes:
    """The example clip shipped with the package (or a generated vowel-like signal), looped, as 8 kHz
    mu-law; ``silent_share`` of it replaced by pauses (see ``stream_guard.cli.bench.with_pauses``)."""
    from stream_guard.cli.bench import with_pauses

    clip = ROOT / "stream_guard" / "examples" / "formant-vowels.wav"
    if clip.exists():
        x, sr = sf.read(clip, dtype="float32", always_2d=True)
        x = soxr.resample(x.mean(axis=1), sr, 8000)
    else:
        t = np.arange(8000 * 4) / 8000
        x = (0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    n = int(seconds * 8000)
    x = np.tile(x, math.ceil(n / len(x)))[:n].astype(np.float32)
    return encode(with_pauses(x, 8000, silent_share, seed), AudioFormat(8000, "mulaw"))


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[str], int]:
    cmd = [
        sys.executable,
        "-m",
        "stream_guard.cli",
        "serve",
        "--no-auth",
        "--port",
        "0",
        "--log-level",
        "warning",
    ]
    cmd += [
        "--max-streams",
        str(max(256, args.calls * 2)),
        "--max-connections",
        str(max(512, args.calls * 3)),
    ]
    if args.io_only:
        sys.path.insert(0, str(ROOT / "tests"))
        from bundles import build_bundle  # the tiny test bundle: needs the dev extra (onnx)

        target = Path.home() / ".cache" / "stream-guard" / "bench" / "band-energy.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        args.model = str(build_bundle(target))
    if args.model:
        cmd += ["--model", args.model]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.hop:
        cmd += ["--hop", str(args.hop)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit(f"server failed to start (exit {proc.wait()})")
        m = re.search(r"serving on ws://[^:]+:(\d+)", line)
        if m:
            return proc, int(m.group(1))


class Call:
    """One simulated call: its pre-encoded payloads and the send time of every media message."""

    def __init__(self, index: int, payloads: list[str]) -> None:
        self.sid = f"MZbench{index:04d}"
        self.stream = f"{self.sid}/inbound"
        self.payloads = payloads
        self.sent_at = np.zeros(len(payloads))
        self.started = 0.0
        self.first_score: float | None = None
        self.late_sends = 0
        self.closed: str | None = None
        self.ws: Any = None

    async def open(self, port: int) -> None:
        # no client keepalive: an overloaded server must show up as latency and drops, not as dropped calls
        self.ws = await connect(
            f"ws://127.0.0.1:{port}/twilio", proxy=None, compression=None, ping_interval=None
        )
        await self.ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        start = {
            "streamSid": self.sid,
            "accountSid": "ACbench",
            "callSid": f"CA{self.sid[2:]}",
            "tracks": ["inbound"],
            "customParameters": {},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
        await self.ws.send(
            json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": self.sid, "start": start})
        )

    async def send_frame(self, i: int) -> None:
        if i == 0:
            self.started = time.monotonic()
        await self.ws.send(
            f'{{"event":"media","sequenceNumber":"{i + 2}","streamSid":"{self.sid}","media":'
            f'{{"track":"inbound","chunk":"{i + 1}","timestamp":"{i * 20}","payload":"{self.payloads[i]}"}}}}'
        )
        self.sent_at[i] = time.monotonic()

    async def stop(self) -> None:
        n = len(self.payloads) + 2
        await self.ws.send(
            json.dumps({"event": "stop", "sequenceNumber": str(n), "streamSid": self.sid, "stop": {}})
        )
        await self.ws.close()


async def drive(calls: list[Call], port: int, stagger_s: float) -> None:
    """One 20 ms clock for all calls (cheaper than a timer per call); call k starts k * stagger / N later."""
    offsets = [round(stagger_s * k / len(calls) / 0.02) for k in range(len(calls))]
    await asyncio.gather(*(c.open(port) for c in calls))
    n = len(calls[0].payloads)
    live = set(range(len(calls)))
    t0 = time.monotonic()
    tick = 0
    while live:
        delay = t0 + tick * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.02:
            for k in live:
                calls[k].late_sends += 1
        for k in list(live):
            i = tick - offsets[k]
            if i < 0:
                continue
            try:
                if i < n:
                    await calls[k].send_frame(i)
                else:
                    live.discard(k)
                    await calls[k].stop()
            except ConnectionClosed as exc:
                live.discard(k)
                calls[k].closed = f"{exc.rcvd.code} {exc.rcvd.reason}" if exc.rcvd else str(exc)
        tick += 1


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # 8 different pause phases are enough to keep calls from pausing in lock-step
    variants = 8 if args.silent_share > 0 else 1
    payload_sets = []
    for v in range(variants):
        audio = call_audio(args.seconds, args.silent_share, seed=v)
        payload_sets.append(
            [base64.b64encode(audio[i : i + FRAME]).decode() for i in range(0, len(audio), FRAME)]
        )
    proc, port = start_server(args)
    server = psutil.Process(proc.pid)
    me = psutil.Process()
    calls = [Call(i, payload_sets[i % variants]) for i in range(args.calls)]
    by_stream = {c.stream: c for c in calls}
    latencies: list[float] = []
    engine_latencies: list[float] = []
    skipped_events = 0
    summaries: dict[str, dict[str, Any]] = {}
    hub_dropped = 0
    rss_peak = 0
    cpu_samples: list[float] = []

    async def listen(ws: Any) -> None:
        nonlocal hub_dropped, skipped_events
        async for text in ws:
            now = time.monotonic()
            ev = json.loads(text)
            if ev.get("type") == "dropped":
                hub_dropped += ev["count"]
                continue
            call = by_stream.get(ev.get("stream"))
            if call is None:
                continue
            if ev["type"] == "score":
                if call.first_score is None:
                    call.first_score = now - call.started
                if ev["score"] is None:  # an abstaining window reported without inference
                    skipped_events += 1
                    continue
                k = max(0, math.ceil(round(ev["end_s"] * 8000) / FRAME) - 1)
                if k < len(call.sent_at) and call.sent_at[k] > 0:
                    latencies.append((now - call.sent_at[k]) * 1000.0)
                engine_latencies.append(ev["latency_ms"])
            elif ev["type"] == "summary":
                summaries[ev["stream"]] = ev
                if len(summaries) == len(calls):
                    return

    async def sample() -> None:
        nonlocal rss_peak
        server.cpu_percent(None)
        while True:
            await asyncio.sleep(1.0)
            cpu_samples.append(server.cpu_percent(None))
            rss_peak = max(rss_peak, server.memory_info().rss)

    try:
        async with connect(
            f"ws://127.0.0.1:{port}/v1/events", proxy=None, max_size=None, compression=None
        ) as sub:
            await asyncio.sleep(0.5)
            listener = asyncio.create_task(listen(sub))
            sampler = asyncio.create_task(sample())
            gen_cpu0 = me.cpu_times()
            t_start = time.monotonic()
            await drive(calls, port, args.stagger)
            wall = time.monotonic() - t_start
            gen_cpu1 = me.cpu_times()
            try:
                await asyncio.wait_for(listener, timeout=60)
            except asyncio.TimeoutError:
                listener.cancel()
            sampler.cancel()
        metrics_text = await asyncio.to_thread(scrape, port)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    lat = np.asarray(latencies)
    eng = np.asarray(engine_latencies)
    steady = cpu_samples[int(args.stagger) + 2 : -2] or cpu_samples
    first = [c.first_score for c in calls if c.first_score is not None]
    gen_cpu = (gen_cpu1.user + gen_cpu1.system - gen_cpu0.user - gen_cpu0.system) / wall * 100.0

    def pct(a: np.ndarray) -> dict[str, float | None]:
        if not a.size:
            return {"p50": None, "p95": None, "p99": None, "max": None, "count": 0}
        return {
            "p50": float(np.percentile(a, 50)),
            "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)),
            "max": float(a.max()),
            "count": int(a.size),
        }

    return {
        "benchmark": "telephony_load",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_after": os.getloadavg(),
        },
        "calls": args.calls,
        "call_seconds": args.seconds,
        "protocol": "twilio (inbound track, mu-law 8 kHz, 20 ms messages)",
        "window_latency_ms_send_to_event": pct(lat),
        "engine_latency_ms": pct(eng),
        "time_to_first_score_s": pct(np.asarray(first)),
        "silent_share": args.silent_share,
        "windows_scored": int(sum(s["windows"] - s.get("windows_skipped", 0) for s in summaries.values())),
        "windows_skipped": int(sum(s.get("windows_skipped", 0) for s in summaries.values())),
        "skipped_events_received": skipped_events,
        "windows_dropped": int(sum(s["windows_dropped"] for s in summaries.values())),
        "windows_dropped_metric": metric(metrics_text, "streamguard_windows_dropped_total"),
        "event_messages_dropped_to_subscriber": hub_dropped,
        "summaries_received": len(summaries),
        "late_media_sends": int(sum(c.late_sends for c in calls)),
        "calls_closed_early": {c.sid: c.closed for c in calls if c.closed},
        "server_options": {
            "threads": args.threads,
            "hop_s": args.hop,
            "model": args.model or "embedded default",
            "io_only": args.io_only,
        },
        "server_cpu_percent_of_one_core": {
            "mean_steady": float(np.mean(steady)) if steady else None,
            "max": float(max(cpu_samples)) if cpu_samples else None,
        },
        "server_rss_peak_mb": rss_peak / 2**20,
        "load_generator_cpu_percent_of_one_core": gen_cpu,
        "wall_s": wall,
    }


def scrape(port: int) -> str:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return opener.open(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100, help="concurrent calls (default 100)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each call (default 60)")
    parser.add_argument(
        "--stagger", type=float, default=2.0, help="spread call starts over this many seconds"
    )
    parser.add_argument("--model", default=None, help="bundle to serve (default: the embedded model)")
    parser.add_argument(
        "--threads", type=int, default=1, help="onnxruntime threads in the server (default 1: a core for I/O)"
    )
    parser.add_argument(
        "--io-only",
        action="store_true",
        help="serve the tiny test bundle (near-free inference): measures the protocol and transport path",
    )
    parser.add_argument("--hop", type=float, default=None, help="server --hop (default: the bundle's)")
    parser.add_argument(
        "--silent-share",
        type=float,
        default=0.0,
        help="fraction of every call that is a pause (line noise at -65 dBFS, 3 s pauses; default 0)",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "telephony_load.json"))
    args = parser.parse_args()
    if not 0.0 <= args.silent_share < 1.0:
        parser.error(f"--silent-share must be in [0, 1), got {args.silent_share}")
    report = asyncio.run(run(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
