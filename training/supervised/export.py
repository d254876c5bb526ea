"""Export a selected supervised checkpoint as a stream-guard bundle (family ``supervised``).

``python -m training.supervised export --checkpoint runs/NAME/best.pt --out supervised.onnx``

The graph takes ``audio [batch, samples]`` and returns ``score [batch]`` (the logit of "synthetic", score kind
``logit``) and ``anomaly_map [batch, frames]``: the per-column logit track (``map_axes.kind == "time"``, one
column per 160 ms). Export, metadata and the PyTorch/onnxruntime parity check use the one-class exporter's
helpers (:mod:`export.onnx_utils`, :func:`export.oneclass.parity_audio`), so both bundle families are written
and verified the same way. The calibration (threshold, logistic center/scale) comes from the checkpoint's dev
evaluation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from export.oneclass import PARITY_TOL, parity_audio
from export.onnx_utils import ExportError, dynamo_export, parity, save_bundle, set_bundle_metadata
from stream_guard.bundle import FORMAT_VERSION, BundleMetadata, Calibration, MapAxes, read_metadata

from .trainer import load_model

__all__ = ["ExportError", "export_supervised"]


def default_parity_files(manifest: Path, split: str, limit: int = 16) -> list[Path]:
    from training.oneclass.data import read_manifest, select, subsample

    clips = select(read_manifest(manifest), split, "real")
    return [c.path for c in subsample(clips, limit, key="parity")]


def export_supervised(
    checkpoint: str | Path, out: str | Path, parity_files: list[Path] | None = None, name: str | None = None,
    tol: float = PARITY_TOL,
) -> dict[str, Any]:  # fmt: skip
    """Export, attach metadata, verify parity; returns a summary (also stored in the bundle metadata)."""
    model, cfg, info = load_model(checkpoint)
    fe = model.frontend.cfg
    sr = fe.sample_rate
    sc = cfg.scoring
    window = int(round(sc.window_s * sr))
    # The shortest input must give at least one track column: 16 spectrogram frames.
    min_samples = max(int(round(sc.min_audio_s * sr)), fe.win_length + 15 * fe.hop_length)
    example = torch.zeros(2, window)
    example[:, ::7] = 0.01
    proto = dynamo_export(model.eval(), example, ["score", "anomaly_map"], min_samples)
    cal = info["dev"]["calibration"]
    dev = {k: v for k, v in info["dev"].items() if k != "calibration"}
    meta = BundleMetadata(
        format_version=FORMAT_VERSION,
        name=name or f"supervised-lite0-{cfg.name}",
        family="supervised",
        sample_rate=sr,
        window_s=sc.window_s,
        hop_s=sc.runtime_hop_s,
        min_audio_s=min_samples / sr,
        score_kind="logit",
        map_axes=MapAxes(kind="time", frame_step_s=model.frame_step_s),
        calibration=Calibration(
            threshold=cal["threshold"], center=cal["center"], scale=cal["scale"], fitted_on=cal["fitted_on"]
        ),
        description=(
            "Supervised companion detector: ImageNet EfficientNet-Lite0 (to stride 16) fine-tuned as a "
            f"binary classifier on an in-graph {fe.n_mels}-band log-mel image, real speech vs classic "
            "synthesizers and vocoder resyntheses, the same augmentation on both classes. score = logit of "
            "'synthetic' (mean of the time track); anomaly_map = per-column logits over time."
        ),
        training={
            "data": info.get("data", str(cfg.data.manifest)),
            "steps": info["step"],
            "commit": info.get("commit", "unknown"),
            "config": cfg.name,
            "dev": dev,
        },  # fmt: skip
        licence=info.get("licence", ""),
        extra={"frontend": {k: getattr(fe, k) for k in fe.__dataclass_fields__}, "head": "time track, mean"},
    )
    set_bundle_metadata(proto, meta)
    out = save_bundle(proto, out)
    read_metadata(out)
    files = parity_files or default_parity_files(cfg.manifest_path, cfg.data.dev_split)
    audio = parity_audio(files, sr, window, min_samples)
    diffs = parity(model, out, audio)
    worst = max(diffs.values())
    extra = dict(meta.extra)
    extra["parity"] = {
        "max_abs_diff": diffs, "tolerance": tol, "windows": int(sum(len(a) for a in audio)),
        "audio": "real clips: " + ", ".join(Path(f).name for f in files[:4])
        + (" ..." if len(files) > 4 else ""),
    }  # fmt: skip
    meta2 = BundleMetadata(**{**meta.__dict__, "extra": extra})
    set_bundle_metadata(proto, meta2)
    save_bundle(proto, out)
    read_metadata(out)
    if not math.isfinite(worst) or worst > tol:
        raise ExportError(
            f"parity check failed: max abs diff {diffs} exceeds {tol} ({out} kept for inspection)"
        )
    return {"out": str(out), "bytes": out.stat().st_size, "parity": diffs, "ok": True}
