"""Window latency of every AntiDeepfake architecture on this machine, batch 1/8/32 -> JSON.

Weights are random (latency does not depend on their values). Each size is run through onnxruntime (the
runtime's backend) when its fp32 graph fits one ONNX file (< 2 GB: w2v_small, w2v_large / mms_300m) and
through PyTorch eager otherwise; the backend is recorded per row. Architectures that are identical in shape
(w2v_large and mms_300m; mms_1b and xlsr_1b) are timed once and reported for both. A (size, batch) pair is
skipped, with the reason recorded, when its predicted run time exceeds ``--budget-s`` or its memory does not
fit.

"Streams per machine" is how many live streams one machine keeps up with when every stream sends one window
per hop: windows/s at that batch size x hop_s.

    python benchmarks/antideepfake_latency.py --out benchmarks/results/antideepfake_latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAME_SHAPE = {"mms_300m": "w2v_large", "xlsr_1b": "mms_1b"}
ONNX_LIMIT_BYTES = 1_900_000_000


def machine_info(threads: int) -> dict[str, Any]:
    import onnxruntime
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1e6, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "threads_used": threads,
        "memory_gb": mem_gb,
        "gpu": None,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "note": "shared machine: other jobs may run on the same cores; treat numbers as upper bounds",
    }


def available_memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 1024**3


def make_runner(name: str, backend: str, threads: int, tmp: Path) -> tuple[Any, dict[str, Any]]:
    """A function audio[B, S] -> None that runs the model once, and facts about the model."""
    import torch

    from training.antideepfake.architectures import get_arch
    from training.antideepfake.model import AntiDeepfakeDetector

    torch.set_num_threads(threads)
    spec = get_arch(name)
    t0 = time.perf_counter()
    detector = AntiDeepfakeDetector(spec).eval()
    params = detector.num_parameters()
    info: dict[str, Any] = {
        "params_millions": round(params / 1e6, 1),
        "init_s": round(time.perf_counter() - t0, 1),
    }
    if backend == "auto":
        backend = "onnxruntime" if params * 4 < ONNX_LIMIT_BYTES else "torch"
    info["backend"] = backend
    if backend == "torch":

        def run_torch(audio: np.ndarray) -> None:
            with torch.inference_mode():
                detector(torch.from_numpy(audio))

        return run_torch, info

    import onnxruntime as ort

    from export.antideepfake import _export_graph

    path = tmp / f"{name}.onnx"
    t0 = time.perf_counter()
    _export_graph(detector, path, example_s=2.0, opset=20)
    info["export_s"] = round(time.perf_counter() - t0, 1)
    detector = None  # free the PyTorch copy; onnxruntime holds its own weights
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run_onnx(audio: np.ndarray) -> None:
        session.run(["score", "anomaly_map"], {"audio": audio})

    return run_onnx, info


def time_batches(
    run: Any, batches: list[int], window_s: float, repeats: int, budget_s: float, hop_s: float
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    per_window_s: float | None = None
    for batch in batches:
        audio = (0.1 * rng.standard_normal((batch, int(window_s * 16_000)))).astype(np.float32)
        predicted = per_window_s * batch * (repeats + 1) if per_window_s is not None else 0.0
        if predicted > budget_s:
            rows.append({"batch": batch, "skipped": f"predicted {predicted:.0f} s > {budget_s:.0f} s budget"})
            continue
        run(audio[:1])  # warm-up (allocations, kernel selection)
        times = []
        for _ in range(repeats if batch < 32 else max(1, repeats // 2)):
            t0 = time.perf_counter()
            run(audio)
            times.append(time.perf_counter() - t0)
        latency = statistics.median(times)
        per_window_s = latency / batch
        windows_per_s = batch / latency
        rows.append(
            {
                "batch": batch,
                "latency_ms": round(latency * 1000, 1),
                "per_window_ms": round(per_window_s * 1000, 1),
                "windows_per_s": round(windows_per_s, 2),
                "real_time_factor": round(latency / (batch * window_s), 4),
                "streams_per_machine_at_hop": round(windows_per_s * hop_s, 1),
                "runs": len(times),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    from training.antideepfake.architectures import ARCHITECTURES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", nargs="*", default=list(ARCHITECTURES))
    ap.add_argument("--batches", nargs="*", type=int, default=[1, 8, 32])
    ap.add_argument("--window-s", type=float, default=4.0)
    ap.add_argument("--hop-s", type=float, default=1.0)
    ap.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "torch"])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=240.0, help="skip a batch predicted to take longer")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "antideepfake_latency.json"))
    args = ap.parse_args(argv)

    from training.antideepfake.architectures import get_arch

    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    results: dict[str, Any] = dict(previous.get("architectures", {}))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.archs:
            spec = get_arch(name)
            if name in SAME_SHAPE and SAME_SHAPE[name] in results and "rows" in results[SAME_SHAPE[name]]:
                results[name] = {**results[SAME_SHAPE[name]], "same_shape_as": SAME_SHAPE[name]}
                continue
            need = spec.params_millions * 1e6 * 4 * 2.2  # weights + init/activation headroom
            if need > available_memory_bytes():
                results[name] = {
                    "skipped": f"needs ~{need / 1e9:.1f} GB, {available_memory_bytes() / 1e9:.1f} GB free"
                }
                print(f"{name}: skipped (memory)", file=sys.stderr)
                continue
            print(f"{name}: building ({spec.params_millions:.0f} M parameters)", file=sys.stderr)
            run, info = make_runner(name, args.backend, args.threads, Path(tmp))
            rows = time_batches(run, args.batches, args.window_s, args.repeats, args.budget_s, args.hop_s)
            results[name] = {**info, "rows": rows, "load_average_after": round(os.getloadavg()[0], 2)}
            print(f"{name}: {json.dumps(rows)}", file=sys.stderr)
            del run
    payload = {
        "benchmark": "antideepfake_latency",
        "window_s": args.window_s,
        "hop_s": args.hop_s,
        "weights": "random (timing only)",
        "machine": machine_info(args.threads),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "architectures": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"written {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
