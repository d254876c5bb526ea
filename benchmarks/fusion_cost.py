"""Cost per window of the fused pair (one-class + supervised) against the one-class bundle alone -> JSON.

Every detector runs through the runtime's own backends (:class:`OnnxRuntimeBackend`, :class:`FusedBackend`)
on 2 s windows of generated audio (the cost does not depend on the signal), at batch sizes 1 and 8 and 1 and 2
intra-op threads, the detectors timed in rotation. Reported per configuration: median and p90 milliseconds per
batch and per window, and the fused/one-class ratio. The machine's load average is recorded: on a shared
machine the absolute numbers move with the load, the ratio much less.

    python benchmarks/fusion_cost.py --out benchmarks/results/fusion_cost.json   # the default model
    python benchmarks/fusion_cost.py --fusion site.fusion.json                # any fusion file
    python benchmarks/fusion_cost.py --oneclass A.onnx --supervised B.onnx   # any pair, no fusion file needed
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


def _time_interleaved(fns: dict[str, Any], x: np.ndarray, repeats: int, warmup: int = 3) -> dict[str, list]:
    """Milliseconds per call of each function, timed in rotation (one call of each per round), so that a
    change of load on a shared machine hits every detector alike and their ratio stays meaningful."""
    for fn in fns.values():
        for _ in range(warmup):
            fn(x)
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(x)
            out[name].append((time.perf_counter() - t0) * 1000.0)
    return out


def _pair_fusion(oneclass: Path, supervised: Path, folder: Path) -> Path:
    """A fusion file with neutral weights for a pair that has none (cost does not depend on the weights)."""
    import shutil

    from stream_guard.backends.fused import FusionMember, FusionSpec, sha256_file

    for p in (oneclass, supervised):
        shutil.copy(p, folder / p.name)
    spec = FusionSpec(
        name="benchmark-pair",
        members=(
            FusionMember("oneclass", oneclass.name, sha256_file(oneclass)),
            FusionMember("supervised", supervised.name, sha256_file(supervised)),
        ),
        weights=(1.0, 1.0), bias=0.0, threshold=0.0, fitted_on="benchmark: neutral weights",
    )  # fmt: skip
    return spec.write(folder / "pair.fusion.json")


def run(fusion: Path, repeats: int, batches: list[int], threads: list[int]) -> dict[str, Any]:
    from stream_guard.backends import FusedBackend, OnnxRuntimeBackend

    load_at_start = [round(v, 2) for v in os.getloadavg()]
    rows = []
    rng = np.random.default_rng(0)
    for th in threads:
        fused = FusedBackend(fusion, provider="cpu", threads=th)
        members = {m.role: OnnxRuntimeBackend(fusion.parent / m.file, provider="cpu", threads=th)
                   for m in fused.spec.members}  # fmt: skip
        n = fused.metadata.window_samples
        for b in batches:
            x = (0.1 * rng.standard_normal((b, n))).astype(np.float32)
            res: dict[str, Any] = {"threads": th, "batch": b}
            backends = {**members, "fused": fused}
            timings = _time_interleaved({name: be.infer for name, be in backends.items()}, x, repeats)
            for name, ms in timings.items():
                res[name] = {
                    "ms_per_batch_median": round(statistics.median(ms), 3),
                    "ms_per_batch_p90": round(float(np.quantile(ms, 0.9)), 3),
                    "ms_per_window_median": round(statistics.median(ms) / b, 3),
                }
            res["fused_over_oneclass"] = round(
                res["fused"]["ms_per_batch_median"] / res["oneclass"]["ms_per_batch_median"], 2
            )
            rows.append(res)
            print(json.dumps(res), flush=True)
        fused.close()
    return {
        "benchmark": "fusion_cost",
        "fusion": str(fusion),
        "members": {m.role: m.file for m in FusedBackend(fusion, provider="cpu").spec.members},
        "window_s": fused.metadata.window_s,
        "repeats": repeats,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_1_5_15_at_start": load_at_start,
            "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        },  # fmt: skip
        "results": rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--fusion",
        type=Path,
        default=None,
        help="a fusion file (default: the pair given by --oneclass/--supervised, else the default model)",
    )
    p.add_argument("--oneclass", type=Path, default=None)
    p.add_argument("--supervised", type=Path, default=None)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fusion_cost.json")
    args = p.parse_args(argv)
    from stream_guard.bundle import BundleError

    try:
        with tempfile.TemporaryDirectory() as tmp:
            fusion = args.fusion
            if fusion is None and (args.oneclass or args.supervised):
                if not (args.oneclass and args.supervised):
                    p.error("give both --oneclass and --supervised (or --fusion, or neither)")
                fusion = _pair_fusion(args.oneclass, args.supervised, Path(tmp))
            elif fusion is None:
                from stream_guard.bundle import default_model_path

                fusion = default_model_path()
            result = run(fusion, args.repeats, args.batches, args.threads)
    except BundleError as exc:
        print(f"fusion_cost: error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
