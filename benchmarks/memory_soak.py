#!/usr/bin/env python3
"""Memory soak: does RSS stay flat when a lot of audio flows through the engine?

Two runs, each fed as fast as the engine accepts audio (offline streams, so nothing is dropped and the run
takes minutes, not hours), with this process's RSS sampled against the amount of audio processed:

* ``one``: one stream, ``--hours`` (default 1) of audio;
* ``many``: ``--streams`` (default 100) concurrent streams of ``--minutes`` (default 10) each.

Every event is consumed (map columns included) and dropped, as a sink that forwards events would. Growth is
measured from the end of the first tenth of each run (allocators and caches warmed up) to its end.

    python benchmarks/memory_soak.py [--model BUNDLE] [--runs one,many] [--out benchmarks/results]

Writes ``memory-soak.json`` and ``memory-soak.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil

from stream_guard.backends import load_backend
from stream_guard.cli.bench import generated_speechlike
from stream_guard.core import AudioFormat, StreamConfig, encode
from stream_guard.engine import Engine, EngineConfig

RESULTS = Path(__file__).resolve().parent / "results"
CHUNK_S = 1.0
LOOP_S = 37.0  # the generated signal repeats with this period (not a multiple of the hop)


async def soak(backend, n_streams: int, seconds: float, sample_every_s: float) -> dict:
    """Feed ``n_streams`` x ``seconds`` of audio; RSS sampled every ``sample_every_s`` of audio per stream."""
    meta = backend.metadata
    fmt = AudioFormat(meta.sample_rate, "pcm16", 1)
    loops = [
        encode(generated_speechlike(LOOP_S, meta.sample_rate, seed=i), fmt) for i in range(min(8, n_streams))
    ]
    chunk_bytes = int(CHUNK_S * meta.sample_rate) * fmt.bytes_per_frame
    proc = psutil.Process()
    samples: list[dict] = []
    progress = [0.0] * n_streams
    windows = [0]
    t0 = time.perf_counter()

    def sample() -> None:
        samples.append(
            {
                "audio_s_per_stream": min(progress),
                "audio_s_total": sum(progress),
                "wall_s": time.perf_counter() - t0,
                "rss_mb": proc.memory_info().rss / 2**20,
            }
        )

    engine = Engine(backend, EngineConfig())
    config = StreamConfig(realtime=False)

    async def one(i: int) -> None:
        stream = await engine.open_stream(f"soak-{i}", fmt, config)
        loop = loops[i % len(loops)]

        async def consume() -> None:
            async for ev in stream.events():
                if ev.type == "score":
                    windows[0] += 1

        consumer = asyncio.create_task(consume())
        pos = (i * 7919 * fmt.bytes_per_frame) % len(loop)  # streams start at different places of the loop
        fed = 0.0
        while fed < seconds:
            end = pos + chunk_bytes
            piece = loop[pos:end] if end <= len(loop) else loop[pos:] + loop[: end - len(loop)]
            pos = end % len(loop)
            await stream.feed(piece)
            fed += CHUNK_S
            progress[i] = fed
        await stream.close()
        await consumer

    async def sampler(done: asyncio.Event) -> None:
        next_at = 0.0
        while not done.is_set():
            if min(progress) >= next_at:
                sample()
                next_at += sample_every_s
            await asyncio.sleep(0.05)

    async with engine:
        done = asyncio.Event()
        task = asyncio.create_task(sampler(done))
        await asyncio.gather(*(one(i) for i in range(n_streams)))
        done.set()
        await task
        sample()
        stats = engine.stats()

    rss = np.array([s["rss_mb"] for s in samples])
    start = max(1, len(samples) // 10)
    return {
        "streams": n_streams,
        "seconds_per_stream": seconds,
        "windows_scored": windows[0],
        "windows_dropped": stats.get("windows_dropped"),
        "wall_s": time.perf_counter() - t0,
        "rss_mb_at_10pct": float(rss[start]),
        "rss_mb_end": float(rss[-1]),
        "rss_mb_peak": float(rss.max()),
        "rss_growth_mb_after_warmup": float(rss[-1] - rss[start]),
        "samples": samples,
    }


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    fig, axes = plt.subplots(
        1, len(runs), figsize=(6 * len(runs), 3.8), constrained_layout=True, squeeze=False
    )
    for ax, (name, run) in zip(axes[0], runs.items(), strict=True):
        x = [s["audio_s_per_stream"] / 60 for s in run["samples"]]
        ax.plot(x, [s["rss_mb"] for s in run["samples"]], marker=".")
        ax.set_xlabel("audio processed per stream (min)")
        ax.set_ylabel("RSS (MB)")
        ax.set_title(
            f"{name}: {run['streams']} stream(s) x {run['seconds_per_stream'] / 60:.0f} min; "
            f"growth {run['rss_growth_mb_after_warmup']:+.1f} MB"
        )
        lo = min(s["rss_mb"] for s in run["samples"])
        ax.set_ylim(lo - 20, max(s["rss_mb"] for s in run["samples"]) + 20)
    fig.suptitle(f"stream-guard memory soak: {report['model']}", fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="bundle path (default: the embedded default model)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--runs", default="one,many", help="which runs: one, many (default: both)")
    parser.add_argument("--hours", type=float, default=1.0, help="audio of the single stream (default: 1)")
    parser.add_argument("--streams", type=int, default=100, help="streams of the 'many' run (default: 100)")
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="audio per stream, 'many' run (default: 10)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="memory-soak")
    args = parser.parse_args()

    backend = load_backend(args.model, provider="cpu", threads=args.threads)
    report: dict = {
        "kind": "stream-guard memory soak",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "model": backend.metadata.name,
        "load_average_at_start": os.getloadavg()[0],
        "runs": {},
    }
    try:
        runs = {r.strip() for r in args.runs.split(",")}
        if "one" in runs:
            print(f"one stream x {args.hours:g} h ...", flush=True)
            report["runs"]["one"] = asyncio.run(soak(backend, 1, args.hours * 3600, sample_every_s=60.0))
        if "many" in runs:
            print(f"{args.streams} streams x {args.minutes:g} min ...", flush=True)
            report["runs"]["many"] = asyncio.run(
                soak(backend, args.streams, args.minutes * 60, sample_every_s=15.0)
            )
    finally:
        backend.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / f"{args.name}.png")
    for name, run in report["runs"].items():
        print(
            f"{name}: {run['streams']} x {run['seconds_per_stream']:.0f} s, {run['windows_scored']} windows "
            f"in {run['wall_s']:.0f} s; RSS {run['rss_mb_at_10pct']:.1f} -> {run['rss_mb_end']:.1f} MB "
            f"(growth {run['rss_growth_mb_after_warmup']:+.1f} MB, peak {run['rss_mb_peak']:.1f} MB)"
        )
    print(f"report: {args.out / (args.name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
