"""Export an AntiDeepfake detector to a stream-guard ONNX bundle, check parity, optionally quantise to int8.

The bundle (DESIGN.md, "The model bundle"):

* input ``audio`` float32 ``[batch, samples]`` at 16 kHz, batch and length dynamic (0.5 s up to minutes);
  the per-utterance waveform normalisation is inside the graph;
* ``score`` float32 ``[batch]`` = logit(fake) - logit(real), the log-odds of "synthetic" under the model's
  2-way softmax (not a probability; ``sigmoid(score)`` is the model's P(fake), which is what the metadata's
  calibration with centre 0 and scale 1 states). Higher = more likely synthetic, 0 = the model's 50/50 point;
* ``anomaly_map`` float32 ``[batch, frames]``: the same logit difference for every 20 ms frame embedding
  (``map_axes.kind == "time"``, ``frame_step_s`` 0.02; frame ``j`` sees samples ``[320 j, 320 j + 400)``).
  Its mean over frames equals ``score`` because the head is linear.

Usage::

    python -m export.antideepfake --checkpoint mms_300m.ckpt --out mms300m.onnx --quantize
    python -m export.antideepfake --random-arch w2v_small --out w2v_small_random.onnx   # timing only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream_guard.bundle import (
    FORMAT_VERSION,
    METADATA_KEY,
    BundleMetadata,
    Calibration,
    MapAxes,
)

FAMILY = "antideepfake"
FRAME_STEP_S = 0.02
RELEASED_LICENCE = (
    "Weights: AntiDeepfake checkpoint by NII Yamagishi Lab, CC BY-NC-SA 4.0 (non-commercial use only, "
    "share-alike); not redistributable as part of a commercial product."
)
#: A protobuf message (one ONNX file without external data) cannot exceed 2 GiB.
_PROTOBUF_LIMIT = 2_000_000_000


@dataclass
class ExportResult:
    path: Path
    metadata: BundleMetadata
    parity: dict[str, Any]
    export_seconds: float
    size_bytes: int
    quantized: dict[str, Any] = field(default_factory=dict)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def build_metadata(
    *,
    name: str,
    arch: str,
    window_s: float,
    hop_s: float,
    min_audio_s: float,
    licence: str,
    training: dict[str, Any],
    description: str = "",
    extra: dict[str, Any] | None = None,
) -> BundleMetadata:
    """Bundle metadata for an AntiDeepfake detector (calibration = the model's own softmax)."""
    return BundleMetadata(
        format_version=FORMAT_VERSION,
        name=name,
        family=FAMILY,
        sample_rate=16_000,
        window_s=window_s,
        hop_s=hop_s,
        min_audio_s=min_audio_s,
        map_axes=MapAxes(kind="time", frame_step_s=FRAME_STEP_S, freq_hz=()),
        calibration=Calibration(
            threshold=0.0,
            center=0.0,
            scale=1.0,
            fitted_on="not fitted: the model's own softmax, P(fake) = sigmoid(score); threshold at P 0.5",
        ),
        score_kind="logit",
        description=description
        or (
            f"AntiDeepfake {arch}: SSL backbone, mean pooling, Linear(D, 2). "
            "score = logit(fake) - logit(real) "
            "(log-odds, not a probability); anomaly_map = the same per 20 ms frame."
        ),
        training=training,
        licence=licence,
        extra={
            "antideepfake": {
                "arch": arch,
                "score": "logit(fake) - logit(real)",
                "frame_track": "head applied to each frame embedding; mean over frames == score",
                "frame_receptive_field_s": 0.025,
                "normalisation": "per-utterance zero mean / unit variance inside the graph",
            },
            **(extra or {}),
        },
    )


def _export_graph(detector: Any, path: Path, example_s: float, opset: int) -> None:
    import torch

    from training.antideepfake.architectures import RECEPTIVE_FIELD
    from training.antideepfake.model import ScoringGraph

    graph = ScoringGraph(detector).eval()
    example = torch.randn(2, int(example_s * 16_000))
    batch = torch.export.Dim("batch", min=1, max=4096)
    samples = torch.export.Dim("samples", min=RECEPTIVE_FIELD, max=16_000 * 600)
    with torch.no_grad():
        program = torch.onnx.export(
            graph,
            (example,),
            dynamo=True,
            input_names=["audio"],
            output_names=["score", "anomaly_map"],
            dynamic_shapes={"audio": {0: batch, 1: samples}},
            opset_version=opset,
            verbose=False,
        )
    n_bytes = sum(p.numel() * p.element_size() for p in detector.parameters())
    program.save(str(path), external_data=n_bytes > _PROTOBUF_LIMIT)


def write_metadata(path: Path, meta: BundleMetadata) -> None:
    """Store the metadata JSON under ``stream_guard`` in ``metadata_props`` (replacing any previous value)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = meta.to_json()
    onnx.save(model, str(path))


def speechlike_signals(
    lengths_s: tuple[float, ...] = (0.5, 2.0, 4.0, 7.3), seed: int = 0
) -> list[np.ndarray]:
    """Speech-like test signals (harmonic voiced segments with noise) for parity when no audio is given."""
    rng = np.random.default_rng(seed)
    out = []
    for length in lengths_s:
        n = int(length * 16_000)
        t = np.arange(n) / 16_000
        f0 = 110 + 30 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / 16_000
        voiced = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
        out.append((0.1 * voiced + 0.01 * rng.standard_normal(n)).astype(np.float32))
    return out


def parity_check(
    detector: Any, onnx_path: Path, signals: list[np.ndarray], threads: int | None = None
) -> dict:
    """Max |PyTorch - onnxruntime| of score and track over ``signals`` (each run at batch 1 and batch 2)."""
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    score_diff = track_diff = 0.0
    lengths = []
    for x in signals:
        batch = np.stack([x, x[::-1].copy()])
        o_score, o_track = session.run(["score", "anomaly_map"], {"audio": batch})
        with torch.inference_mode():
            out = detector(torch.from_numpy(batch))
        score_diff = max(score_diff, float(np.max(np.abs(o_score - out.score.numpy()))))
        track_diff = max(track_diff, float(np.max(np.abs(o_track - out.frame_score.numpy()))))
        lengths.append(round(len(x) / 16_000, 3))
    return {"max_abs_score_diff": score_diff, "max_abs_map_diff": track_diff, "lengths_s": lengths}


def quantize_int8(src: Path, dst: Path, meta: BundleMetadata, signals: list[np.ndarray]) -> dict[str, Any]:
    """Dynamic int8 quantisation of the MatMul/Gemm weights; returns its cost on ``signals`` against fp32."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        # The exporter's intermediate value_info can disagree with onnx's own shape inference (which the
        # quantiser runs); dropping it lets shape inference start from the inputs.
        external = src.with_name(src.name + ".data").exists()  # > 2 GB graphs keep weights beside the file
        model = onnx.load(str(src))
        del model.graph.value_info[:]
        plain = Path(tmp) / "plain.onnx"
        onnx.save(model, str(plain), save_as_external_data=external)
        quantize_dynamic(
            str(plain),
            str(dst),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            use_external_data_format=external,
        )
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    fp32 = ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
    int8 = ort.InferenceSession(str(dst), opts, providers=["CPUExecutionProvider"])
    diffs = []
    for x in signals:
        a = fp32.run(["score"], {"audio": x[None]})[0]
        b = int8.run(["score"], {"audio": x[None]})[0]
        diffs.append(float(np.abs(a - b).max()))
    cost = {
        "weights": "int8 dynamic (MatMul/Gemm), activations quantised at run time",
        "max_abs_score_diff_vs_fp32": max(diffs),
        "mean_abs_score_diff_vs_fp32": float(np.mean(diffs)),
        "size_bytes_fp32": src.stat().st_size,
        "size_bytes_int8": dst.stat().st_size,
    }
    extra = dict(meta.extra)
    extra["quantization"] = cost
    q_meta = BundleMetadata(**{**meta.__dict__, "name": meta.name + "-int8", "extra": extra})
    write_metadata(dst, q_meta)
    return cost


def export_detector(
    detector: Any,
    out: str | Path,
    *,
    name: str,
    window_s: float = 4.0,
    hop_s: float = 1.0,
    min_audio_s: float = 0.5,
    licence: str = "",
    training: dict[str, Any] | None = None,
    parity_audio: list[np.ndarray] | None = None,
    quantize: bool = False,
    opset: int = 20,
    threads: int | None = None,
) -> ExportResult:
    """Export, write metadata, check parity (and quantise); returns what was measured."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    detector = detector.eval().float()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # Exported under its final name: with external data, the graph refers to "<name>.data" by name.
        raw = Path(tmp) / out.name
        _export_graph(detector, raw, example_s=min(window_s, 4.0), opset=opset)
        export_s = time.perf_counter() - t0
        signals = parity_audio or speechlike_signals()
        parity = parity_check(detector, raw, signals, threads)
        meta = build_metadata(
            name=name,
            arch=detector.spec.name,
            window_s=window_s,
            hop_s=hop_s,
            min_audio_s=min_audio_s,
            licence=licence,
            training={"commit": git_commit(), **(training or {})},
            extra={"parity": parity},
        )
        write_metadata(raw, meta)
        raw.replace(out)
        data_file = Path(tmp) / (out.name + ".data")
        if data_file.exists():
            data_file.replace(out.with_name(out.name + ".data"))
    result = ExportResult(out, meta, parity, export_s, out.stat().st_size)
    if quantize:
        q_path = out.with_name(out.stem + "-int8.onnx")
        result.quantized = quantize_int8(out, q_path, meta, signals)
        result.quantized["path"] = str(q_path)
    return result


def _load_parity_audio(paths: list[str]) -> list[np.ndarray]:
    """Mono float32 at the detector's 16 kHz; :class:`~training.audio_io.AudioReadError` names a bad file."""
    from training.antideepfake.architectures import SAMPLE_RATE
    from training.audio_io import read_audio

    return [read_audio(p, sample_rate=SAMPLE_RATE)[0] for p in paths]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.antideepfake", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="released .ckpt / model.safetensors, or a fine-tuning checkpoint")
    src.add_argument("--random-arch", help="random weights of this architecture (timing and tests only)")
    ap.add_argument("--arch", default=None, help="architecture of --checkpoint (default: read off the file)")
    ap.add_argument("--tiny", action="store_true", help="with --random-arch: a tiny same-family model")
    ap.add_argument("--out", required=True, help="bundle path (.onnx)")
    ap.add_argument("--name", default=None)
    ap.add_argument(
        "--window-s", type=float, default=4.0, help="window the runtime sends (AntiDeepfake: >= 4 s)"
    )
    ap.add_argument("--hop-s", type=float, default=1.0)
    ap.add_argument("--min-audio-s", type=float, default=0.5)
    ap.add_argument("--licence", default=None, help="licence of the weights (default depends on the source)")
    ap.add_argument("--parity-audio", nargs="*", default=[], help="audio files for the parity check")
    ap.add_argument("--quantize", action="store_true", help="also write an int8 dynamic-quantised bundle")
    ap.add_argument("--trust-pickle", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from training.antideepfake.checkpoint import CheckpointError
    from training.audio_io import AudioReadError

    try:
        import torch

        torch.manual_seed(args.seed)
        from training.antideepfake.architectures import get_arch
        from training.antideepfake.checkpoint import load_detector
        from training.antideepfake.model import AntiDeepfakeDetector

        if args.checkpoint:
            detector, report = load_detector(args.checkpoint, args.arch, trust_pickle=args.trust_pickle)
            print(report.summary(), file=sys.stderr)
            origin = {
                "checkpoint": Path(args.checkpoint).name,
                "layout": report.layout,
                **report.training_state,
            }
            licence = args.licence or (RELEASED_LICENCE if report.layout != "training" else "")
            if not licence:
                print(
                    "warning: no --licence given; state the licence of the fine-tuned weights",
                    file=sys.stderr,
                )
        else:
            spec = get_arch(args.random_arch)
            spec = spec.tiny() if args.tiny else spec
            detector = AntiDeepfakeDetector(spec)
            origin = {
                "checkpoint": None,
                "data": "none: random weights, for timing and tests only",
                "steps": 0,
            }
            licence = args.licence or "Apache-2.0 (random weights, no training data)"
        name = args.name or f"antideepfake-{detector.spec.name}"
        result = export_detector(
            detector,
            args.out,
            name=name,
            window_s=args.window_s,
            hop_s=args.hop_s,
            min_audio_s=args.min_audio_s,
            licence=licence,
            training=origin,
            parity_audio=_load_parity_audio(args.parity_audio) or None,
            quantize=args.quantize,
        )
    except (CheckpointError, AudioReadError, KeyError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    summary = {
        "bundle": str(result.path),
        "size_mb": round(result.size_bytes / 1e6, 1),
        "export_seconds": round(result.export_seconds, 1),
        "parity": result.parity,
        "quantized": result.quantized or None,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
