"""Export a trained one-class STFPM checkpoint as a stream-guard bundle.

``python -m export oneclass --checkpoint runs/NAME/best.pt --out bundle.onnx``

- The graph takes ``audio [batch, samples]`` (both dynamic, samples >= ``min_audio_s``) and returns ``score``
  and ``anomaly_map [batch, F, T]``; the front end and DS are inside.
- The raw discrepancy tensors ``e_l`` are exported as outputs and then removed from the output list: they stay
  in the graph under recorded names, so ``stream-guard calibrate`` can expose them again and refit DS without
  torch. The DS statistics are initializers whose names are recorded the same way.
- Calibration (threshold and logistic center/scale) comes from the checkpoint's dev evaluation for the
  exported scorer; the threshold is the 95th percentile (configurable) of held-out real dev *window* scores.
- Parity: PyTorch vs onnxruntime on real audio windows (2 s and 0.5 s, several batch sizes); the max abs diff
  is printed and stored in the metadata; above the tolerance the export fails.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stream_guard.bundle import FORMAT_VERSION, BundleMetadata, Calibration, MapAxes, read_metadata
from stream_guard.cli.calibrate import CAL_REF_KEY, DS_KEY

from .onnx_utils import ExportError, drop_outputs, dynamo_export, parity, save_bundle, set_bundle_metadata

PARITY_TOL = 1e-4


def parity_audio(
    files: list[Path], sample_rate: int, window: int, min_samples: int, limit: int = 16
) -> list[np.ndarray]:
    """Batches of real audio for the parity check: full windows (batches of 1, 3 and 8) and short windows."""
    from training.oneclass.data import load_clip

    wins: list[np.ndarray] = []
    for f in files:
        x = load_clip(Path(f), sample_rate)
        for s in range(0, max(1, len(x) - window + 1), window):
            seg = x[s : s + window]
            if len(seg) == window:
                wins.append(seg)
        if len(wins) >= limit:
            break
    if not wins:
        raise ExportError("parity: no real clip is at least one window long")
    out = [np.stack(wins[:1]), np.stack(wins[: min(3, len(wins))]), np.stack(wins[: min(8, len(wins))])]
    out.append(np.stack([w[:min_samples] for w in wins[:2]]))  # time-to-first-score windows
    out.append(np.stack([w[: (window + min_samples) // 2] for w in wins[:2]]))
    return out


def default_parity_files(cfg: Any, limit: int = 16) -> list[Path]:
    from training.oneclass.data import read_manifest, select, subsample

    clips = select(read_manifest(cfg.manifest_path), cfg.data.dev_split, "real")
    return [c.path for c in subsample(clips, limit, key="parity")]


def export_oneclass(
    checkpoint: str | Path,
    out: str | Path,
    scorer: str | None = None,
    parity_files: list[Path] | None = None,
    name: str | None = None,
    tol: float = PARITY_TOL,
    description: str | None = None,
) -> dict[str, Any]:
    """Export, attach metadata, verify parity; returns a summary (also stored in the bundle metadata)."""
    from training.oneclass.model import ExportWrapper
    from training.oneclass.trainer import load_model

    model, cfg, info = load_model(checkpoint)
    if scorer is None:
        scorer = f"{'ds' if cfg.model.ds_enabled else 'plain'}_{cfg.model.pooling}"
    ds_on, pooling = scorer.split("_")[0] == "ds", scorer.split("_")[1]
    model.cfg.ds_enabled, model.cfg.pooling = ds_on, pooling
    if ds_on and not bool(model.ds_fitted):
        raise ExportError(f"{checkpoint}: Discrepancy Scaling statistics were never fitted")
    fe = model.frontend.cfg
    sr = fe.sample_rate
    sc = cfg.scoring
    window = int(round(sc.window_s * sr))
    min_samples = max(int(round(sc.min_audio_s * sr)), fe.min_samples)

    wrapper = ExportWrapper(model, with_discrepancies=True).eval()
    example = torch.zeros(2, window)
    example[:, ::7] = 0.01
    proto = dynamo_export(
        wrapper, example, ["score", "anomaly_map", "disc_0", "disc_1", "disc_2"], min_samples
    )
    disc_names = drop_outputs(proto, ["score", "anomaly_map"])
    # A map on some pyramid levels only (model.levels) uses those levels' DS statistics only: the others are
    # not in the graph, and the recorded tensors pair each kept level's statistics with its discrepancy.
    levels = list(cfg.model.levels) if cfg.model.levels is not None else [0, 1, 2]
    disc_names = [disc_names[i] for i in levels]
    init_names = {i.name for i in proto.graph.initializer}
    mu_names = [n for i in levels for n in init_names if n.endswith(f"ds_mu_{i}")]
    scale_names = [n for i in levels for n in init_names if n.endswith(f"ds_scale_{i}")]
    if ds_on and (len(mu_names) != len(levels) or len(scale_names) != len(levels)):
        raise ExportError(
            f"DS statistics are not plain initializers in the exported graph ({sorted(init_names)[:8]})"
        )

    dev = info["dev"]
    if scorer not in dev.get("calibration", {}):
        raise ExportError(
            f"{checkpoint}: no dev calibration for scorer {scorer!r} (has "
            f"{sorted(dev.get('calibration', {}))}); refit it first: python -m training.oneclass.refit"
        )
    cal = dev["calibration"][scorer]
    geom = model.map_geometry()
    summary = {k: v for k, v in dev.items() if k != "calibration"}
    meta = BundleMetadata(
        format_version=FORMAT_VERSION,
        name=name or f"stfpm-{cfg.model.backbone}-{cfg.name}",
        family="stfpm",
        sample_rate=sr,
        window_s=sc.window_s,
        hop_s=sc.runtime_hop_s,
        min_audio_s=min_samples / sr,
        score_kind="anomaly",
        map_axes=MapAxes(
            kind="time_frequency", frame_step_s=geom["frame_step_s"], freq_hz=tuple(geom["freq_hz"])
        ),
        calibration=Calibration(
            threshold=cal["threshold"], center=cal["center"], scale=cal["scale"], fitted_on=cal["fitted_on"]
        ),
        description=description
        or (
            "One-class STFPM detector (teacher/student feature-pyramid matching, "
            f"{cfg.model.backbone} teacher, strides 4/8/16) on an in-graph {fe.n_mels}-band log-mel image; "
            "trained on real speech only, so anything unlike real speech scores high. anomaly_map rows are "
            "frequency bands "
            "(freq_hz), columns 40 ms steps; score = "
            + {"topk": "top-k mean", "max": "maximum", "mean": "mean"}[pooling]
            + " of the map"
            + (" after Discrepancy Scaling." if ds_on else " (plain STFPM product of level maps).")
        ),
        training={
            "data": info.get("data", str(cfg.data.manifest)),
            "steps": int(info["steps"]),
            "epoch": int(info["epoch"]),
            "commit": info.get("commit", "unknown"),
            "config": cfg.name,
            "dev": summary,
        },
        licence=info.get("licence", "model weights: see the model card; code: Apache-2.0"),
        extra={
            DS_KEY: {
                "enabled": ds_on,
                "eps": cfg.model.ds_eps,
                "pooled_over": "time and frequency" if cfg.model.ds_pool == "time_freq" else "time",
                "stat_shape": "[1, channels, frequency_rows, 1] per pyramid level",
                "mu_initializers": mu_names,
                "scale_initializers": scale_names,
                "scale_is": "1 / (sigma + eps)",
                "discrepancy_tensors": disc_names,
                "fitted_on": "half of the dev split's real clips (the other half set the threshold)",
            },
            "pooling": {"kind": pooling, "topk_fraction": cfg.model.topk_fraction},
            "levels": cfg.model.levels if cfg.model.levels is not None else [0, 1, 2],
            "frontend": {k: getattr(fe, k) for k in fe.__dataclass_fields__},
            CAL_REF_KEY: {"quantile": sc.threshold_quantile, **cal.get("reference", {})},
        },
    )
    set_bundle_metadata(proto, meta)
    out = save_bundle(proto, out)
    read_metadata(out)

    files = parity_files if parity_files else default_parity_files(cfg)
    audio = parity_audio(files, sr, window, min_samples)
    check_model = ExportWrapper(model, with_discrepancies=False).eval()
    diffs = parity(check_model, out, audio)
    worst = max(diffs.values())
    extra = dict(meta.extra)
    extra["parity"] = {
        "max_abs_diff": diffs,
        "tolerance": tol,
        "windows": int(sum(len(a) for a in audio)),
        "audio": "real clips: "
        + ", ".join(Path(f).name for f in files[:4])
        + (" ..." if len(files) > 4 else ""),
    }
    meta2 = BundleMetadata(**{**meta.__dict__, "extra": extra})
    set_bundle_metadata(proto, meta2)
    save_bundle(proto, out)
    read_metadata(out)
    result = {
        "out": str(out),
        "bytes": out.stat().st_size,
        "scorer": scorer,
        "parity": diffs,
        "ok": worst <= tol,
    }
    if not math.isfinite(worst) or worst > tol:
        raise ExportError(
            f"parity check failed: max abs diff {diffs} exceeds {tol} ({out} kept for inspection)"
        )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export oneclass", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="best.pt of a training run")
    p.add_argument("--out", required=True, help="bundle path to write")
    p.add_argument(
        "--scorer",
        choices=("ds_max", "ds_topk", "ds_mean", "plain_max", "plain_topk", "plain_mean"),
        default=None,
        help="scorer to export (default: the run config's)",
    )
    p.add_argument("--name", default=None, help="bundle name in the metadata")
    p.add_argument(
        "--parity-audio",
        nargs="*",
        type=Path,
        default=None,
        help="real audio files for the parity check (default: dev real clips of the run's manifest)",
    )
    p.add_argument("--tolerance", type=float, default=PARITY_TOL)
    args = p.parse_args(argv)
    from training.oneclass.checkpoint import CheckpointError
    from training.oneclass.data import DataError

    try:
        res = export_oneclass(
            args.checkpoint, args.out, args.scorer, args.parity_audio, args.name, args.tolerance
        )
    except (ExportError, CheckpointError, DataError) as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2))
    return 0
