"""Time from the browser's audio to the score on the dashboard, over WebRTC -> JSON.

Headless Chromium plays a WAV file of loud noise bursts as its microphone and streams it from the dashboard's
"Test with my microphone" button to an in-process ``stream-guard serve``; the page shows each window's score.
For every window, the latency is

    (when the page showed its score) - (when the browser captured the window's last sample)

Both ends are wall-clock times on this machine. The capture clock comes from Web Audio in the page: a tap on
the microphone stream records when each burst's onset was captured; the server finds the same onsets in the
audio it received, which maps stream time to capture time (the offsets of all bursts agree to a few ms; their
spread is reported). The total is split into capture -> server (Opus encode, RTP, jitter buffer, decode),
engine (window ready -> score, the ScoreEvent's ``latency_ms``) and the rest (event -> websocket -> page).

    python benchmarks/webrtc_latency.py --bursts 20 --out benchmarks/results/webrtc_latency.json

Without ``--model`` it uses the embedded default bundle if the package has one, else the small test bundle
from ``tests/bundles.py`` (whose inference cost is negligible: the figures are then the transport's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "tests", ROOT / "tests" / "dashboard"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {
        "n": int(a.size),
        "p50": round(float(np.percentile(a, 50)), 1),
        "p95": round(float(np.percentile(a, 95)), 1),
        "mean": round(float(a.mean()), 1),
        "max": round(float(a.max()), 1),
    }


def server_onsets(
    pcm: np.ndarray, rate: int = 16000, threshold: float = 0.2, quiet_s: float = 0.1
) -> list[int]:
    """Sample indices where the received audio turns loud after at least ``quiet_s`` of silence."""
    loud = np.abs(pcm.astype(np.float32) / 32768.0) > threshold
    onsets: list[int] = []
    last_loud = -(10**9)
    for i in np.flatnonzero(loud):
        if i - last_loud > quiet_s * rate:
            onsets.append(int(i))
        last_loud = i
    return onsets


def pick_model(model: str | None, workdir: Path) -> Path:
    if model:
        return Path(model)
    from stream_guard.bundle import default_bundle_path

    if default_bundle_path().exists():
        return default_bundle_path()
    from bundles import build_bundle

    return build_bundle(workdir / "test-bundle.onnx")


def chromium_version() -> str:
    from chromium import find_chromium

    binary = find_chromium()
    if binary is None:
        return "not installed"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


async def measure(bundle: Path, bursts_n: int, workdir: Path) -> dict[str, Any]:
    from e2e import RATE, bursts, microphone_session, serving, write_wav

    audio = bursts(count=bursts_n)
    wav = write_wav(workdir / "bursts.wav", audio)
    async with serving(bundle, workdir) as server:
        model = server.engine.metadata.name
        run = await microphone_session(server, wav, seconds=len(audio) / RATE + 0.5, probe=True)

    captured = run.onsets_ms
    received = server_onsets(run.received)
    if len(captured) < 2 or len(received) < 2:
        raise RuntimeError(f"onsets not found (page {len(captured)}, server {len(received)}): {run.console}")
    # the first burst may be cut by the lost lead-in on one side only: pair onsets by their spacing
    k = min(len(captured), len(received))
    captured, received = captured[-k:], received[-k:]
    offsets = [c - s / 16.0 for c, s in zip(captured, received, strict=True)]  # capture epoch ms of t = 0
    origin = float(np.median(offsets))

    arrivals = np.array(run.arrivals, dtype=float)  # (sample offset, epoch s) per chunk
    total, to_server, engine, to_page = [], [], [], []
    for entry in run.score_log:
        end_ms = entry["end_s"] * 1000.0
        captured_at = origin + end_ms
        total.append(entry["at"] - captured_at)
        last_sample = int(round(entry["end_s"] * 16000)) - 1
        idx = int(np.searchsorted(arrivals[:, 0], last_sample, side="right")) - 1
        arrived_at = arrivals[idx, 1] * 1000.0
        to_server.append(arrived_at - captured_at)
        engine.append(entry["latency_ms"])
        to_page.append(entry["at"] - arrived_at - entry["latency_ms"])
    return {
        "model": model,
        "windows": len(run.score_log),
        "bursts": bursts_n,
        "capture_to_page_ms": percentiles(total),
        "capture_to_server_ms": percentiles(to_server),
        "engine_ms": percentiles(engine),
        "event_to_page_ms": percentiles(to_page),
        "onset_offset_spread_ms": round(float(np.max(offsets) - np.min(offsets)), 1),
        "onsets_matched": k,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="bundle to serve (default: embedded, else test bundle)")
    parser.add_argument("--bursts", type=int, default=20, help="noise bursts (1 s on, 1 s off) to stream")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "webrtc_latency.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sg-webrtc-bench-") as tmp:
        workdir = Path(tmp)
        bundle = pick_model(args.model, workdir)
        started = time.time()
        load = os.getloadavg()[0]  # other work on the machine shows up in these figures
        result = asyncio.run(measure(bundle, args.bursts, workdir))
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    report = {
        "benchmark": "webrtc_latency",
        "what": "browser capture of a window's last sample -> its score shown on the dashboard (wall clock)",
        "command": "python benchmarks/webrtc_latency.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "load_average_1m_at_start": round(load, 2),
            "python": platform.python_version(),
            "chromium": chromium_version(),
        },
        "path": "Chromium fake mic -> Opus -> loopback -> aiortc -> 16 kHz -> engine -> /v1/webrtc -> page",
        **result,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
