#!/usr/bin/env python3
"""What the runtime itself costs, apart from the model: the ceiling the engine puts on streams per core.

Three measurements, written to ``engine-overhead.json``:

* ``feed``: CPU time of ``StreamState.feed`` per chunk for typical inputs (20 ms of 8 kHz mu-law, 20 ms of
  16 kHz PCM, 10 ms of 44.1 kHz stereo float32), i.e. decoding, resampling, buffering and windowing;
* ``results``: CPU time of ``StreamState.on_result`` per window (calibration, smoothing, verdict, map
  stitching, event objects) with a real 16 x 50 map;
* ``engine``: N real-time-paced streams through the whole engine with a zero-cost backend (a stand-in that
  returns zeros instantly, so only the runtime is measured): process CPU per second of wall time, and the
  window latency the runtime alone adds. Model cost comes on top of this and is measured by ``stream-guard
  bench``.

    python benchmarks/engine_overhead.py [--streams 100,300] [--seconds 20] [--out benchmarks/results]
        [--name engine-overhead]

The test bundle builder (tests/bundles.py, needs the ``onnx`` package) provides the bundle geometry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil
import soxr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bundles import build_bundle, speechlike  # noqa: E402

from stream_guard import AudioFormat, Engine, EngineConfig, StreamConfig, load_backend  # noqa: E402
from stream_guard.core.formats import encode  # noqa: E402
from stream_guard.core.stream import StreamState  # noqa: E402


class ZeroCostBackend:
    """Stand-in backend: answers instantly with zeros of the bundle's output shapes (runtime cost only)."""

    def __init__(self, metadata, rows: int, frame_samples: int) -> None:
        self.metadata = metadata
        self.rows = rows
        self.frame_samples = frame_samples

    def infer(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, s = audio.shape
        return np.zeros(b, np.float32), np.zeros((b, self.rows, s // self.frame_samples), np.float32)

    def close(self) -> None:
        pass


def cpu_seconds() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def bench_feed(meta) -> list[dict]:
    x16 = speechlike(60.0, level=0.1)
    cases = [
        ("8 kHz mu-law, 20 ms", AudioFormat(8000, "mulaw"), soxr.resample(x16, 16000, 8000), 0.02),
        ("16 kHz pcm16, 20 ms", AudioFormat(16000, "pcm16"), x16, 0.02),
        (
            "44.1 kHz float32 stereo, 10 ms",
            AudioFormat(44100, "float32", 2),
            np.stack([soxr.resample(x16, 16000, 44100)] * 2, axis=1),
            0.01,
        ),
    ]
    out = []
    for name, fmt, x, chunk_s in cases:
        raw = encode(np.clip(x, -1, 1), fmt)
        step = int(round(chunk_s * fmt.sample_rate)) * fmt.bytes_per_frame
        chunks = [raw[i : i + step] for i in range(0, len(raw), step)]
        cpu = wall = float("inf")
        for _ in range(3):  # best of three: the machine is shared, the minimum is the code's own cost
            state = StreamState("bench", meta, fmt)
            c0, t0 = time.process_time(), time.perf_counter()  # process_time: finer than psutil's ticks
            windows = sum(len(state.feed(c)) for c in chunks)
            cpu, wall = min(cpu, time.process_time() - c0), min(wall, time.perf_counter() - t0)
        out.append(
            {
                "input": name,
                "chunks": len(chunks),
                "windows": windows,
                "cpu_us_per_chunk": round(cpu / len(chunks) * 1e6, 2),
                "wall_us_per_chunk": round(wall / len(chunks) * 1e6, 2),
                "cpu_ms_per_stream_second": round(cpu / 60.0 * 1e3, 3),
            }
        )
    return out


def bench_results(meta, backend) -> dict:
    """CPU of ``on_result`` per window, each window resolved as soon as it is cut (as in the engine, where a
    stream has only a few windows in flight), with real scores and maps from the backend."""
    x = speechlike(300.0, level=0.1)
    probe = StreamState("probe", meta, AudioFormat(16000, "float32"), StreamConfig(warmup=False))
    first = probe.feed(x[: 16000 * 18])
    scores, maps = backend.infer(np.stack([w.samples for w in first[:32]]))
    state = StreamState("bench", meta, AudioFormat(16000, "float32"), StreamConfig(warmup=False))
    cpu = 0.0
    events = windows = 0
    for start in range(0, len(x), 8000):
        for w in state.feed(x[start : start + 8000]):
            c0 = time.process_time()
            events += len(state.on_result(w, float(scores[windows % 32]), maps[windows % 32], 1.0))
            cpu += time.process_time() - c0
            windows += 1
    return {
        "windows": windows,
        "events": events,
        "cpu_us_per_window": round(cpu / windows * 1e6, 1),
    }


async def bench_engine(backend, n: int, seconds: float, chunk_ms: int = 20) -> dict:
    fmt = AudioFormat(8000, "mulaw")
    payload = encode(np.clip(soxr.resample(speechlike(seconds, level=0.1), 16000, 8000), -1, 1), fmt)
    step = 8 * chunk_ms
    latencies: list[float] = []
    async with Engine(backend, EngineConfig()) as engine:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.1
        late = 0

        async def one(i: int) -> None:
            nonlocal late
            stream = await engine.open_stream(f"s{i}", fmt)
            start = t0 + 0.5 * i / n  # calls do not start in lock-step

            async def consume() -> None:
                async for ev in stream.events():
                    if ev.type == "score":
                        latencies.append(ev.latency_ms)

            consumer = asyncio.create_task(consume())
            for k, pos in enumerate(range(0, len(payload), step)):
                delay = start + (k + 1) * chunk_ms / 1000 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.05:
                    late += 1
                await stream.feed(payload[pos : pos + step])
            await stream.close()
            await consumer

        c0, w0 = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
        stats = engine.stats()
    lat = np.asarray(latencies)
    return {
        "streams": n,
        "seconds": seconds,
        "chunk_ms": chunk_ms,
        "windows": int(lat.size),
        "dropped": stats["windows_dropped"],
        "late_feeds": late,
        "cpu_cores_used": round(cpu / wall, 3),
        "latency_ms": {q: round(float(np.percentile(lat, int(q[1:]))), 2) for q in ("p50", "p95", "p99")},
        "batch_size_mean": stats["batch_size_mean"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="100,300")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--name", default="engine-overhead", help="file name stem of the report")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        real = load_backend(build_bundle(Path(tmp) / "bundle.onnx"), provider="cpu", threads=1)
    meta = real.metadata
    fake = ZeroCostBackend(meta, len(meta.map_axes.freq_hz), int(round(meta.map_axes.frame_step_s * 16000)))
    report = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "feed": bench_feed(meta),
        "results": bench_results(meta, real),
        "engine": [asyncio.run(bench_engine(fake, int(n), args.seconds)) for n in args.streams.split(",")],
    }
    report["machine"]["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
