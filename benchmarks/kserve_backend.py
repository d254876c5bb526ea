#!/usr/bin/env python3
"""What scoring on a KServe v2 server costs next to in-process inference, per window, over loopback.

Starts ``python -m stream_guard.backends.kserve_server`` (pytriton's Triton server) on loopback ports with
the same model and the same onnxruntime thread count as the in-process :class:`OnnxRuntimeBackend`, then, for
each batch size, alternates calls of the two backends on the same windows (alternating keeps both under the
same machine load) and records per-call latency percentiles, milliseconds per window, windows per second
and the ratio remote / in-process. Written to ``benchmarks/results/NAME.json`` with the load average
(``uptime``) before and after.

    python benchmarks/kserve_backend.py [--model oneclass] [--batches 1,8,32] [--seconds 6] [--threads 1]
        [--server-python PYTHON] [--name kserve-backend]

Needs ``stream-guard[triton]`` here and nvidia-pytriton in ``--server-python`` (default: this interpreter,
or ``$STREAM_GUARD_PYTRITON_PYTHON``). On one machine the server competes with the client for the same
cores, so the ratio is the protocol's overhead plus that contention, not what a separate server machine
gives: there, the front end saves the model's whole cost.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bundles import build_bundle, speechlike  # noqa: E402

from stream_guard.backends import OnnxRuntimeBackend, load_backend  # noqa: E402
from stream_guard.bundle import resolve_model_path  # noqa: E402


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def version(dist: str) -> str | None:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return None


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_server(python: str, model: Path, threads: int, max_batch: int, log: Path) -> tuple[Any, str]:
    grpc, http, metrics = free_ports(3)
    cmd = [
        python, "-m", "stream_guard.backends.kserve_server", "--model", str(model), "--name", "bench",
        "--grpc-port", str(grpc), "--http-port", str(http), "--metrics-port", str(metrics),
        "--max-batch", str(max_batch), "--provider", "cpu", "--threads", str(threads),
    ]  # fmt: skip
    fh = open(log, "ab")  # noqa: SIM115 - the server writes to it for its whole life
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    url = f"grpc://127.0.0.1:{grpc}/bench"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: see {log}")
        try:
            load_backend(url).close()
            return proc, url
        except Exception:  # not up yet
            time.sleep(0.5)
    stop_server(proc)
    raise SystemExit(f"server not ready after 300 s: see {log}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def summarize(calls_s: list[float], batch: int) -> dict:
    a = np.asarray(calls_s) * 1000.0
    mean = float(a.mean())
    return {
        "calls": int(a.size),
        "call_ms": {
            "mean": round(mean, 3),
            "p50": round(float(np.percentile(a, 50)), 3),
            "p95": round(float(np.percentile(a, 95)), 3),
            "max": round(float(a.max()), 3),
        },
        "ms_per_window": round(mean / batch, 4),
        "windows_per_s": round(batch / (mean / 1000.0), 1),
    }


def bench_batch(local, remote, batch: int, window: int, seconds: float) -> dict:
    x = np.stack([speechlike(window / 16000.0, level=0.1, seed=i)[:window] for i in range(batch)])
    s_l, m_l = local.infer(x)
    s_r, m_r = remote.infer(x)
    parity = {
        "score_max_abs_diff": float(np.abs(s_l - s_r).max()),
        "map_max_abs_diff": float(np.abs(m_l - m_r).max()),
    }
    for _ in range(3):  # warm-up (allocators, the server's batcher, gRPC buffers)
        local.infer(x)
        remote.infer(x)
    times: dict[str, list[float]] = {"in_process": [], "kserve": []}
    end = time.monotonic() + seconds
    while time.monotonic() < end or len(times["kserve"]) < 5:
        for key, b in (("in_process", local), ("kserve", remote)):
            t0 = time.perf_counter()
            b.infer(x)
            times[key].append(time.perf_counter() - t0)
    res = {k: summarize(v, batch) for k, v in times.items()}
    ip, ks = res["in_process"]["call_ms"]["mean"], res["kserve"]["call_ms"]["mean"]
    return {
        "batch": batch,
        **res,
        "latency_ratio_kserve_over_in_process": round(ks / ip, 3),
        "overhead_ms_per_call": round(ks - ip, 3),
        "parity": parity,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="oneclass", help="bundle or embedded model (default: oneclass)")
    p.add_argument(
        "--test-bundle",
        action="store_true",
        help="use the tiny test bundle (tests/bundles.py; almost free to run): the protocol's own cost",
    )
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--seconds", type=float, default=6.0, help="measuring time per batch size")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads, both sides (default 1)")
    p.add_argument("--server-python", default=None)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--name", default="kserve-backend")
    args = p.parse_args(argv)
    python = args.server_python or os.environ.get("STREAM_GUARD_PYTRITON_PYTHON")
    if python is None and importlib.util.find_spec("pytriton") is not None:
        python = sys.executable
    if python is None:
        raise SystemExit(
            "no interpreter with nvidia-pytriton: pass --server-python or install stream-guard[pytriton]"
        )
    batches = [int(b) for b in args.batches.split(",")]
    scratch = tempfile.TemporaryDirectory()
    model = (
        build_bundle(Path(scratch.name) / "test-band-energy.onnx")
        if args.test_bundle
        else resolve_model_path(args.model)
    )
    load_before = uptime()
    local = OnnxRuntimeBackend(model, provider="cpu", threads=args.threads)
    window = local.metadata.window_samples
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(python, model, args.threads, max(batches), Path(tmp) / "server.log")
        try:
            remote = load_backend(url + "?timeout=60")
            rows = []
            for b in batches:
                rows.append(bench_batch(local, remote, b, window, args.seconds))
                r = rows[-1]
                print(
                    f"batch {b:3d}: in-process {r['in_process']['ms_per_window']:.3f} ms/window, kserve "
                    f"{r['kserve']['ms_per_window']:.3f} ms/window, "
                    f"ratio {r['latency_ratio_kserve_over_in_process']}",
                    flush=True,
                )
            remote.close()
        finally:
            stop_server(proc)
    local.close()
    scratch.cleanup()
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/kserve_backend.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": {
            "path": "tests/bundles.py test bundle" if args.test_bundle else str(model),
            "name": local.metadata.name,
            "window_samples": window,
        },
        "transport": "KServe v2 gRPC over loopback (127.0.0.1), pytriton's Triton server, one model instance",
        "threads": args.threads,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "uptime_before": load_before,
            "uptime_after": uptime(),
        },
        "versions": {d: version(d) for d in ("onnxruntime-gpu", "onnxruntime", "tritonclient", "grpcio")},
        "server_python": python,
        "batches": rows,
        "note": "client and server share the machine's cores; ratio = protocol overhead plus contention",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
