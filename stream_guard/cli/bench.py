"""``stream-guard bench``: latency and capacity of the detector on this machine, from the command line.

Four measurements, one JSON report and one PNG plot:

1. **per-window latency by batch size and provider**: the backend alone, ``[B, window]`` calls for each ``B``;
2. **N concurrent real-time streams**: N streams fed at the speed of live audio through one engine (the real
scheduler, real windowing and resampling); end-to-end window latency p50/p95/p99 (from a window's last sample
arriving to its score being ready), time to first score, drops, CPU and RSS; 3. **the naive baseline in the
same run**: one stream at a time, one window per inference call, no batching, no concurrency; reported as
windows per second and as a ratio to the engine's batched throughput; 4. optionally **the largest N that holds
a p99 target** with no drops (``--find-max-streams``).

Timing numbers belong in reports, never in tests: this command is the place for them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from stream_guard.cli.common import (
    EXIT_OK,
    ModelChoice,
    UserError,
    add_model_options,
    cpu_count,
    load_backend,
    positive_float,
    positive_int,
    stderr_console,
)

EPILOG = """\
examples:
  stream-guard bench                                   batch latency, 100 real-time streams, naive baseline
  stream-guard bench --streams 200 --seconds 30        a bigger, longer stream trial
  stream-guard bench --find-max-streams --p99-target-ms 250
  stream-guard bench --providers cpu,cuda --batch-sizes 1,8,32,64
  stream-guard bench --audio call1.wav call2.wav       stream these files instead of generated audio
  stream-guard bench --silent-share 0.4                calls with pauses: 40 % of each stream is line noise
  python benchmarks/bench.py ...                       the same, from a source checkout

The JSON report and the PNG plot go to benchmarks/results/ (or --out). Streams start staggered over one hop,
as independent calls would.
"""


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: batch sizes must be >= 1")
    return values


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: a share must be in [0, 1)")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure latency and capacity: batch sizes, N real-time streams, naive baseline",
        description=(
            "Measure per-window latency by batch size and provider, end-to-end latency of N simulated "
            "real-time streams, and the naive one-window-at-a-time baseline, on this machine."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--streams",
        type=positive_int,
        default=100,
        metavar="N",
        help="concurrent real-time streams to simulate (default: 100)",
    )
    parser.add_argument(
        "--seconds",
        type=positive_float,
        default=20.0,
        metavar="S",
        help="audio per stream in each stream trial, i.e. its wall-clock length (default: 20)",
    )
    parser.add_argument(
        "--chunk-ms",
        type=positive_float,
        default=100.0,
        metavar="MS",
        help="audio per feed call, like a network packet batch (default: 100)",
    )
    parser.add_argument(
        "--audio",
        nargs="+",
        default=None,
        metavar="FILE",
        help="stream these files (cycled over the streams) instead of generated audio",
    )
    parser.add_argument(
        "--telephony",
        action="store_true",
        help="feed 8 kHz mu-law like a phone call (resampled by the engine) instead of "
        "16-bit PCM at the model's rate",
    )
    parser.add_argument(
        "--silent-share",
        type=_share,
        default=0.0,
        metavar="F",
        help="fraction of each simulated stream that is a pause (line noise at -65 dBFS, 3 s per pause, "
        "staggered across streams), as in real calls; windows in pauses abstain (default: 0)",
    )
    parser.add_argument(
        "--no-skip-abstaining",
        action="store_true",
        help="score abstaining windows (silence, clipping) too, as before skipping existed, to measure "
        "what skipping saves",
    )
    parser.add_argument(
        "--batch-sizes",
        type=_int_list,
        default=[1, 8, 32],
        metavar="B,B,...",
        help="batch sizes for the per-window latency table (default: 1,8,32)",
    )
    parser.add_argument(
        "--providers",
        default=None,
        metavar="P,P,...",
        help="providers for the latency table (default: cpu, plus cuda when a GPU is usable)",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=20,
        metavar="R",
        help="timed calls per batch size (default: 20)",
    )
    parser.add_argument(
        "--naive-windows",
        type=positive_int,
        default=200,
        metavar="W",
        help="windows scored by the naive baseline (default: 200)",
    )
    parser.add_argument(
        "--max-batch",
        type=positive_int,
        default=32,
        metavar="B",
        help="the engine's largest batch (default: 32)",
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=10.0,
        metavar="MS",
        help="the longest a window waits for a fuller batch (default: 10)",
    )
    parser.add_argument(
        "--find-max-streams",
        action="store_true",
        help="search the largest N whose p99 latency stays within --p99-target-ms, no drops",
    )
    parser.add_argument(
        "--p99-target-ms",
        type=positive_float,
        default=250.0,
        metavar="MS",
        help="latency target for --find-max-streams and the pass/fail line (default: 250)",
    )
    parser.add_argument(
        "--max-streams",
        type=positive_int,
        default=2000,
        metavar="N",
        help="upper bound of the --find-max-streams search (default: 2000)",
    )
    parser.add_argument(
        "--skip", default="", metavar="PARTS", help="comma-separated parts to skip: latency, streams, naive"
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="where the JSON report and PNG plot go (default: benchmarks/results in a source "
        "checkout, else ./bench-results)",
    )
    parser.add_argument("--name", default=None, help="file name stem of the report (default: bench-<time>)")
    add_model_options(parser)
    parser.set_defaults(handler=run)


# --- audio for the simulated streams -----------------------------------------------------------------------


def generated_speechlike(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """Deterministic speech-shaped audio (harmonic syllables with pauses, breath noise) for load tests."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = (100 + 80 * rng.random()) * (1 + 0.1 * np.sin(2 * np.pi * (0.3 + rng.random()) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    x = sum(np.sin(k * phase) * (0.8**k) for k in range(1, 12))
    syllables = np.sin(2 * np.pi * (2.0 + 2.0 * rng.random()) * t + rng.random() * 6.28) > -0.2
    x = x * syllables + 0.02 * rng.standard_normal(n)
    return (0.4 * x / np.max(np.abs(x))).astype(np.float32)


def load_audio_files(paths: list[str], sample_rate: int) -> list[np.ndarray]:
    """Mono float32 audio of the files at ``sample_rate``; a bad file is a UserError naming it."""
    import soxr

    from stream_guard.sources.files import FileSourceError, probe, read_blocks

    out = []
    for p in paths:
        try:
            info = probe(p, max_duration_s=3600)
            audio = np.concatenate([b.mean(axis=1) for b in read_blocks(info, 1 << 16)])
        except FileSourceError as exc:
            raise UserError(str(exc)) from None
        if info.sample_rate != sample_rate:
            audio = soxr.resample(audio, info.sample_rate, sample_rate).astype(np.float32)
        out.append(audio)
    return out


@dataclass
class _Feed:
    """The bytes one simulated stream sends and their format."""

    fmt: Any
    payload: bytes
    bytes_per_second: int


PAUSE_S = 3.0  # one pause in a simulated call: long enough that whole 2 s windows fall inside it
PAUSE_LEVEL = 10 ** (-65 / 20)  # line noise in a pause: RMS -65 dBFS, under the -50 dBFS speech gate


def with_pauses(audio: np.ndarray, rate: int, share: float, seed: int) -> np.ndarray:
    """Replace ``share`` of ``audio`` by pauses of ``PAUSE_S`` seconds of faint noise, evenly spaced from a
    per-stream phase, so that simulated calls pause like real ones and not all at once."""
    if share <= 0.0:
        return audio
    period = PAUSE_S / share
    t = np.arange(len(audio)) / rate + np.random.default_rng(seed).random() * period
    pause = np.mod(t, period) < PAUSE_S
    noise = np.random.default_rng(seed + 1).standard_normal(int(pause.sum())) * PAUSE_LEVEL
    out = audio.copy()
    out[pause] = noise.astype(np.float32)
    return out


def make_feeds(
    n: int,
    seconds: float,
    meta: Any,
    telephony: bool,
    files: list[np.ndarray] | None,
    silent_share: float = 0.0,
) -> list[_Feed]:
    """Audio for ``n`` streams of ``seconds`` each, encoded the way a live source would send it."""
    from stream_guard.core import AudioFormat, encode

    rate = 8000 if telephony else meta.sample_rate
    fmt = AudioFormat(rate, "mulaw" if telephony else "pcm16", 1)
    feeds = []
    distinct = min(n, 16)  # 16 distinct signals are enough to avoid lock-step scores; reuse keeps memory low
    cache: dict[int, bytes] = {}
    for i in range(n):
        key = i % distinct
        if key not in cache:
            if files:
                import soxr

                src = files[key % len(files)]
                if rate != meta.sample_rate:
                    src = soxr.resample(src, meta.sample_rate, rate).astype(np.float32)
                reps = int(math.ceil(seconds * rate / max(1, len(src))))
                audio = np.tile(src, reps)[: int(seconds * rate)]
            else:
                audio = generated_speechlike(seconds, rate, seed=key)
            cache[key] = encode(with_pauses(audio, rate, silent_share, seed=key), fmt)
        feeds.append(_Feed(fmt=fmt, payload=cache[key], bytes_per_second=rate * fmt.bytes_per_frame))
    return feeds


# --- 1. per-window latency by batch size ------------------------------------------------------------------


def batch_latency(
    choice: ModelChoice, providers: list[str], batch_sizes: list[int], repeats: int
) -> list[dict]:
    """Backend-only latency: ``repeats`` timed ``infer`` calls of ``[B, window]`` per batch size, provider."""
    from stream_guard.backends import BackendError
    from stream_guard.backends import load_backend as _load
    from stream_guard.bundle import BundleError

    rows: list[dict] = []
    for provider in providers:
        try:
            backend = _load(choice.model, provider=provider, threads=choice.threads)
        except (BackendError, BundleError) as exc:
            rows.append({"provider": provider, "available": False, "reason": str(exc)})
            continue
        try:
            meta = backend.metadata
            rng = np.random.default_rng(0)
            for b in batch_sizes:
                audio = (0.1 * rng.standard_normal((b, meta.window_samples))).astype(np.float32)
                for _ in range(3):  # warm-up: allocations, kernel selection
                    backend.infer(audio)
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    backend.infer(audio)
                    times.append((time.perf_counter() - t0) * 1000.0)
                arr = np.asarray(times)
                rows.append(
                    {
                        "provider": provider,
                        "device": getattr(backend, "device", provider),
                        "available": True,
                        "batch": b,
                        "call_ms_p50": float(np.percentile(arr, 50)),
                        "call_ms_p95": float(np.percentile(arr, 95)),
                        "per_window_ms": float(np.percentile(arr, 50) / b),
                        "windows_per_s": float(b * 1000.0 / np.percentile(arr, 50)),
                    }
                )
        finally:
            backend.close()
    return rows


# --- 2. N concurrent real-time streams ---------------------------------------------------------------------


class _Sampler:
    """CPU and RSS of this process, sampled while a trial runs."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.rss_mb: list[float] = []
        self._cpu0 = self.proc.cpu_times()
        self._t0 = time.perf_counter()

    async def run(self, stop: asyncio.Event, every_s: float = 0.5) -> None:
        while not stop.is_set():
            self.rss_mb.append(self.proc.memory_info().rss / 2**20)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    def result(self) -> dict[str, float]:
        cpu = self.proc.cpu_times()
        wall = time.perf_counter() - self._t0
        used = (cpu.user - self._cpu0.user) + (cpu.system - self._cpu0.system)
        rss = self.rss_mb or [self.proc.memory_info().rss / 2**20]
        return {
            "cpu_cores_used": used / wall if wall > 0 else 0.0,
            "cpu_percent_of_machine": 100.0 * used / wall / cpu_count() if wall > 0 else 0.0,
            "rss_mb_start": rss[0],
            "rss_mb_peak": max(rss),
            "rss_mb_end": rss[-1],
        }


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


async def stream_trial(
    backend: Any, n: int, seconds: float, args: argparse.Namespace, files: list[np.ndarray] | None
) -> dict[str, Any]:
    """Run ``n`` streams fed in real time for ``seconds`` through one engine; latency, drops, CPU, RSS."""
    from stream_guard.core import StreamConfig
    from stream_guard.engine import Engine, EngineConfig
    from stream_guard.events import ScoreEvent, SummaryEvent

    meta = backend.metadata
    feeds = make_feeds(n, seconds, meta, args.telephony, files, args.silent_share)
    hop_s = args.hop or meta.hop_s
    config = StreamConfig(
        hop_s=hop_s, realtime=True, emit_map=True, skip_abstaining=not args.no_skip_abstaining
    )
    latencies: list[float] = []
    first_wall: list[float] = []
    first_audio: list[float] = []
    summaries: list[SummaryEvent] = []
    late_feeds = 0
    stop = asyncio.Event()
    sampler = _Sampler()
    engine = Engine(backend, EngineConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms))
    loop = asyncio.get_running_loop()

    async def one(i: int, feed: _Feed, t_start: float) -> None:
        nonlocal late_feeds
        stream = await engine.open_stream(f"bench-{i}", feed.fmt, config)
        chunk = max(
            feed.fmt.bytes_per_frame,
            int(feed.bytes_per_second * args.chunk_ms / 1000.0)
            // feed.fmt.bytes_per_frame
            * feed.fmt.bytes_per_frame,
        )
        got_first = False

        async def consume() -> None:
            nonlocal got_first
            async for ev in stream.events():
                if isinstance(ev, ScoreEvent):
                    if math.isfinite(ev.score):  # a skipped (abstaining) window's event costs no inference
                        latencies.append(ev.latency_ms)
                    if not got_first:
                        got_first = True
                        first_wall.append(loop.time() - t_start)
                        first_audio.append(ev.end_s)
                elif isinstance(ev, SummaryEvent):
                    summaries.append(ev)

        consumer = asyncio.create_task(consume())
        sent = 0
        while sent < len(feed.payload):
            due = t_start + (sent + chunk) / feed.bytes_per_second  # a chunk is sent once it was "spoken"
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.05:
                late_feeds += 1
            await stream.feed(feed.payload[sent : sent + chunk])
            sent += chunk
        await stream.close()
        await consumer

    async with engine:
        sampler_task = asyncio.create_task(sampler.run(stop))
        t0 = loop.time() + 0.2
        offsets = [hop_s * i / n for i in range(n)]  # independent calls do not start in lock-step
        wall0 = time.perf_counter()
        await asyncio.gather(*(one(i, f, t0 + offsets[i]) for i, f in enumerate(feeds)))
        wall = time.perf_counter() - wall0
        stats = engine.stats()
        stop.set()
        await sampler_task
    dropped = sum(s.windows_dropped for s in summaries)
    result = {
        "streams": n,
        "seconds_per_stream": seconds,
        "hop_s": hop_s,
        "chunk_ms": args.chunk_ms,
        "silent_share": args.silent_share,
        "skip_abstaining": not args.no_skip_abstaining,
        "windows_skipped": sum(s.windows_skipped for s in summaries),
        "input": "8 kHz mu-law" if args.telephony else f"{meta.sample_rate} Hz pcm16",
        "wall_s": wall,
        "windows_scored": len(latencies),
        "windows_dropped": dropped,
        "late_feeds": late_feeds,
        "latency_ms": {
            "p50": _pct(latencies, 50),
            "p95": _pct(latencies, 95),
            "p99": _pct(latencies, 99),
            "max": max(latencies) if latencies else None,
        },
        "time_to_first_score_s": {
            "p50": _pct(first_wall, 50),
            "p95": _pct(first_wall, 95),
            "max": max(first_wall) if first_wall else None,
        },
        "first_score_audio_s": {"max": max(first_audio) if first_audio else None},
        "batch_size_mean": stats.get("batch_size_mean"),
        "batch_size_max": stats.get("batch_size_max"),
        "windows_per_s": len(latencies) / wall if wall > 0 else 0.0,
        **sampler.result(),
    }
    p99 = result["latency_ms"]["p99"]
    result["holds_target"] = bool(p99 is not None and p99 <= args.p99_target_ms and dropped == 0)
    return result


async def find_max_streams(
    backend: Any, args: argparse.Namespace, files: list[np.ndarray] | None, log: Any
) -> dict[str, Any]:
    """Largest N holding the p99 target with no drops: grow x2 from --streams until a failure, then bisect."""
    trials: list[dict[str, Any]] = []

    async def trial(n: int) -> bool:
        res = await stream_trial(backend, n, args.seconds, args, files)
        trials.append(res)
        log(
            f"  {n:5d} streams: p99 {res['latency_ms']['p99'] or float('nan'):7.1f} ms, "
            f"dropped {res['windows_dropped']}, CPU {res['cpu_cores_used']:.2f} cores -> "
            f"{'holds' if res['holds_target'] else 'fails'}"
        )
        return res["holds_target"]

    lo, hi = 0, None
    n = args.streams
    while n <= args.max_streams:
        if await trial(n):
            lo = n
            n *= 2
        else:
            hi = n
            break
    if hi is None:
        hi = args.max_streams + 1
    while hi - lo > max(1, int(0.05 * hi)):
        mid = (lo + hi) // 2
        if await trial(mid):
            lo = mid
        else:
            hi = mid
    return {
        "max_streams": lo,
        "first_failing": hi if hi <= args.max_streams else None,
        "p99_target_ms": args.p99_target_ms,
        "trials": trials,
    }


# --- 3. throughput: engine at full speed vs the naive baseline ---------------------------------------------


async def engine_throughput(
    backend: Any, args: argparse.Namespace, n_streams: int, seconds: float, files: list[np.ndarray] | None
) -> dict[str, Any]:
    """The engine fed as fast as it accepts audio (offline streams, nothing dropped): windows per second."""
    from stream_guard.core import StreamConfig
    from stream_guard.engine import Engine, EngineConfig

    meta = backend.metadata
    feeds = make_feeds(n_streams, seconds, meta, args.telephony, files, args.silent_share)
    config = StreamConfig(
        hop_s=args.hop or meta.hop_s, realtime=False, skip_abstaining=not args.no_skip_abstaining
    )
    windows = 0
    engine = Engine(backend, EngineConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms))

    async def one(i: int, feed: _Feed) -> None:
        nonlocal windows
        stream = await engine.open_stream(f"tp-{i}", feed.fmt, config)

        async def consume() -> None:
            async for _ in stream.events():
                pass

        consumer = asyncio.create_task(consume())
        await stream.feed(feed.payload)
        summary = await stream.close()
        await consumer
        windows += summary.windows

    async with engine:
        t0, c0 = time.perf_counter(), _cpu_seconds()
        await asyncio.gather(*(one(i, f) for i, f in enumerate(feeds)))
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        stats = engine.stats()
    return {
        "streams": n_streams,
        "seconds_per_stream": seconds,
        "windows": windows,
        "wall_s": wall,
        "windows_per_s": windows / wall,
        **_cpu_cost(cpu, windows, args.hop or meta.hop_s),
        "batch_size_mean": stats.get("batch_size_mean"),
    }


def _cpu_seconds() -> float:
    """CPU time of this process (all threads: event loop, inference, resampling)."""
    return time.process_time()


def _cpu_cost(cpu_s: float, windows: int, hop_s: float) -> dict[str, float | None]:
    """CPU per window, and what it implies for real-time streams on this machine's cores if they were idle.

    Wall-clock numbers depend on what else the machine runs; CPU time per window mostly does not, so it gives
    a capacity estimate that survives a busy machine (an estimate: it ignores scheduling headroom).
    """
    if windows <= 0 or cpu_s <= 0:
        return {"cpu_ms_per_window": None, "streams_per_idle_machine_estimate": None}
    per_window = cpu_s / windows
    return {
        "cpu_ms_per_window": 1000.0 * per_window,
        "streams_per_idle_machine_estimate": cpu_count() * hop_s / per_window,
    }


def naive_baseline(
    backend: Any, args: argparse.Namespace, n_windows: int, files: list[np.ndarray] | None
) -> dict[str, Any]:
    """One stream at a time, one window per inference call: the same core, no batching, no concurrency."""
    from stream_guard.core import StreamConfig, StreamState

    meta = backend.metadata
    hop_s = args.hop or meta.hop_s
    seconds_needed = n_windows * hop_s + meta.window_s
    per_stream_s = min(seconds_needed, 30.0)
    n_streams = int(math.ceil(seconds_needed / per_stream_s))
    feeds = make_feeds(n_streams, per_stream_s, meta, args.telephony, files)
    windows = 0
    latencies = []
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    for i, feed in enumerate(feeds):
        state = StreamState(f"naive-{i}", meta, feed.fmt, StreamConfig(hop_s=hop_s, realtime=False))
        chunk = (
            int(feed.bytes_per_second * args.chunk_ms / 1000.0)
            // feed.fmt.bytes_per_frame
            * feed.fmt.bytes_per_frame
        )
        pending = []
        for start in range(0, len(feed.payload), chunk):
            pending.extend(state.feed(feed.payload[start : start + chunk]))
            for window in pending:
                call0 = time.perf_counter()
                score, amap = backend.infer(window.samples[None, :])
                latencies.append((time.perf_counter() - call0) * 1000.0)
                state.on_result(window, float(score[0]), amap[0], latencies[-1])
                windows += 1
            pending = []
            if windows >= n_windows:
                break
        if windows >= n_windows:
            break
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    return {
        **_cpu_cost(cpu, windows, hop_s),
        "windows": windows,
        "wall_s": wall,
        "windows_per_s": windows / wall,
        "call_ms_p50": _pct(latencies, 50),
        "max_realtime_streams_estimate": int(windows / wall * hop_s),
    }


# --- report ------------------------------------------------------------------------------------------------


def default_providers() -> str:
    """The CPU always; CUDA too when a GPU is usable (onnxruntime lists CUDA even without one)."""
    from stream_guard.backends.onnxruntime import cuda_device_count

    return "cpu,cuda" if cuda_device_count() > 0 else "cpu"


def default_out_dir() -> Path:
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "benchmarks").is_dir() and (checkout / "pyproject.toml").exists():
        return checkout / "benchmarks" / "results"
    return Path("bench-results")


def model_report(backend: Any, choice: ModelChoice) -> dict[str, Any]:
    """What ran: the model's path and family, and every bundle it runs (both members of a fused pair, with
    their hashes), so a result file says which detector its numbers belong to."""
    from stream_guard.backends.fused import sha256_file

    path = getattr(backend, "path", None)
    spec = getattr(backend, "spec", None)
    if spec is not None:  # a fused pair: one entry per member bundle
        bundles = [
            {"role": m.role, "name": b.metadata.name, "file": m.file, "sha256": m.sha256}
            for m, b in zip(spec.members, backend.members, strict=True)
        ]
    elif path is not None:
        bundles = [{"name": backend.metadata.name, "file": Path(path).name, "sha256": sha256_file(path)}]
    else:
        bundles = [{"name": backend.metadata.name}]
    return {
        "model_path": str(path) if path is not None else str(choice.model),
        "model_family": backend.metadata.family,
        "embedded_default": choice.model is None,
        "bundles": bundles,
    }


def machine_info(backend: Any) -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "cpus_usable": cpu_count(),
        "cpus_total": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "device": getattr(backend, "device", "unknown"),
        # other work on the machine skews every number here: the 1-minute load average says how much there was
        "load_average_at_start": os.getloadavg()[0],
    }


def plot_report(report: dict[str, Any], path: Path) -> Path:
    """Three panels: per-window latency by batch size, stream latency percentiles, engine vs naive."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    ax = axes[0]
    rows = [r for r in report.get("batch_latency", []) if r.get("available")]
    for provider in sorted({r["provider"] for r in rows}):
        pr = [r for r in rows if r["provider"] == provider]
        ax.plot([r["batch"] for r in pr], [r["per_window_ms"] for r in pr], marker="o", label=provider)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("ms per window (median call / batch)")
    ax.set_title("backend latency by batch size")
    if rows:
        ax.legend()

    ax = axes[1]
    trials = list(report.get("find_max_streams", {}).get("trials", []))
    if report.get("streams"):
        trials.append(report["streams"])
    trials = sorted({t["streams"]: t for t in trials}.values(), key=lambda t: t["streams"])
    if trials:
        ns = [t["streams"] for t in trials]
        for q, style in (("p50", ":"), ("p95", "--"), ("p99", "-")):
            ax.plot(ns, [t["latency_ms"][q] for t in trials], style, marker="o", label=q)
        ax.axhline(report["p99_target_ms"], color="tab:red", lw=0.8, label="p99 target")
        dropped = [t["streams"] for t in trials if t["windows_dropped"]]
        if dropped:
            ax.scatter(
                dropped, [report["p99_target_ms"]] * len(dropped), marker="x", color="k", label="drops"
            )
        ax.set_xlabel("concurrent real-time streams")
        ax.set_ylabel("window latency (ms)")
        ax.set_yscale("log")
        ax.legend()
    ax.set_title("end-to-end window latency")

    ax = axes[2]
    bars, labels = [], []
    if report.get("naive"):
        bars.append(report["naive"]["windows_per_s"])
        labels.append("naive\n(1 window/call)")
    if report.get("engine_throughput"):
        bars.append(report["engine_throughput"]["windows_per_s"])
        labels.append("engine\n(batched)")
    if bars:
        ax.bar(labels, bars, color=["0.6", "tab:blue"][: len(bars)])
        for i, v in enumerate(bars):
            ax.text(i, v, f"{v:.0f}", ha="center", va="bottom")
    ax.set_ylabel("windows per second")
    ratio = report.get("engine_vs_naive_ratio")
    ax.set_title("throughput" + (f": engine / naive = {ratio:.1f}x" if ratio else ""))
    fig.suptitle(
        f"stream-guard bench: {report['model']} on {report['machine']['cpus_usable']} CPU(s), "
        f"{report['machine']['device']}, load average {report['machine']['load_average_at_start']:.1f}",
        fontsize=10,
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    console = stderr_console()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - {"latency", "streams", "naive"}
    if unknown:
        raise UserError(f"--skip: unknown part(s) {sorted(unknown)}; use latency, streams, naive")
    choice = ModelChoice.from_args(args)
    backend = load_backend(choice)
    meta = backend.metadata
    files = load_audio_files(args.audio, meta.sample_rate) if args.audio else None

    def log(message: str) -> None:
        console.print(message, soft_wrap=True, highlight=False)

    report: dict[str, Any] = {
        "kind": "stream-guard bench",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "stream-guard " + " ".join(sys.argv[1:])
        if sys.argv[0].endswith("stream-guard")
        else " ".join(sys.argv),
        "model": meta.name,
        **model_report(backend, choice),
        "window_s": meta.window_s,
        "hop_s": args.hop or meta.hop_s,
        "p99_target_ms": args.p99_target_ms,
        "engine": {"max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "threads": args.threads},
        "silent_share": args.silent_share,
        "skip_abstaining": not args.no_skip_abstaining,
        "machine": machine_info(backend),
    }
    try:
        if "latency" not in skip:
            providers = [p.strip() for p in (args.providers or default_providers()).split(",") if p.strip()]
            log(f"backend latency by batch size {args.batch_sizes} on {providers} ...")
            report["batch_latency"] = batch_latency(choice, providers, args.batch_sizes, args.repeats)
            for r in report["batch_latency"]:
                if r.get("available"):
                    log(
                        f"  {r['provider']:>8} B={r['batch']:3d}: {r['call_ms_p50']:8.2f} ms/call, "
                        f"{r['per_window_ms']:6.2f} ms/window, {r['windows_per_s']:7.0f} windows/s"
                    )
                else:
                    log(f"  {r['provider']:>8}: unavailable ({r['reason']})")
        if "streams" not in skip:
            log(f"{args.streams} real-time streams x {args.seconds:g} s ...")
            report["streams"] = asyncio.run(stream_trial(backend, args.streams, args.seconds, args, files))
            s = report["streams"]
            log(
                f"  latency p50/p95/p99 {s['latency_ms']['p50']:.1f}/{s['latency_ms']['p95']:.1f}/"
                f"{s['latency_ms']['p99']:.1f} ms, dropped {s['windows_dropped']}, skipped "
                f"{s['windows_skipped']}, first score after "
                f"{s['time_to_first_score_s']['max']:.2f} s (audio {s['first_score_audio_s']['max']:.2f} s), "
                f"CPU {s['cpu_cores_used']:.2f} cores, RSS peak {s['rss_mb_peak']:.0f} MB"
            )
            if args.find_max_streams:
                log(f"searching the largest N with p99 <= {args.p99_target_ms:g} ms and no drops ...")
                report["find_max_streams"] = asyncio.run(find_max_streams(backend, args, files, log))
                log(f"  max streams: {report['find_max_streams']['max_streams']}")
        if "naive" not in skip:
            log(f"naive baseline: {args.naive_windows} windows, one per call, one stream at a time ...")
            report["naive"] = naive_baseline(backend, args, args.naive_windows, files)
            tp_streams = max(8, min(args.streams, 64))
            tp_seconds = max(meta.window_s, args.naive_windows * (args.hop or meta.hop_s) / tp_streams * 4)
            report["engine_throughput"] = asyncio.run(
                engine_throughput(backend, args, tp_streams, tp_seconds, files)
            )
            report["engine_vs_naive_ratio"] = (
                report["engine_throughput"]["windows_per_s"] / report["naive"]["windows_per_s"]
            )
            naive_cpu = report["naive"]["cpu_ms_per_window"]
            engine_cpu = report["engine_throughput"]["cpu_ms_per_window"]
            cpu_ratio = naive_cpu / engine_cpu if naive_cpu and engine_cpu else None
            report["engine_vs_naive_cpu_ratio"] = cpu_ratio
            log(
                f"  naive {report['naive']['windows_per_s']:.0f} windows/s, engine "
                f"{report['engine_throughput']['windows_per_s']:.0f} windows/s "
                f"(x{report['engine_vs_naive_ratio']:.2f}); CPU per window: naive {naive_cpu or 0:.2f} ms, "
                f"engine {engine_cpu or 0:.2f} ms (x{cpu_ratio or 0:.2f}) -> about "
                f"{report['engine_throughput']['streams_per_idle_machine_estimate'] or 0:.0f} real-time "
                f"streams on {cpu_count()} idle cores"
            )
    finally:
        backend.close()

    report["machine"]["load_average_at_end"] = os.getloadavg()[0]
    out_dir = Path(args.out).expanduser() if args.out else default_out_dir()
    stem = args.name or "bench-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path = out_dir / f"{stem}.json"
        json_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        png_path = plot_report(report, out_dir / f"{stem}.png")
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot write the report ({exc.strerror or exc})") from None
    log(f"report: {json_path}\nplot:   {png_path}")
    return EXIT_OK
