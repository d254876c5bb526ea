"""Scoring variants of a trained one-class checkpoint, refitted on the same dev clips: no retraining.

``python -m training.oneclass.refit --checkpoint runs/default/best.pt --out runs/variant-ds-channel/best.pt
--set ds_pool=time_freq``

Some choices of the detector live after the student: how the Discrepancy Scaling statistics are pooled
(``ds_pool``: per frequency row or per channel), which pyramid levels enter the map (``levels``) and how the
map becomes a score (``pooling``: ``max``, ``topk`` or ``mean``). Comparing them is only fair on the same
student and the same data, so this command loads a selected checkpoint, applies the overrides, refits DS on
the dev split's DS half and the calibration on the other half plus the dev synthetic clips (exactly the
trainer's :func:`~training.oneclass.trainer.evaluate_dev` split), and writes a new selected checkpoint that
``python -m export oneclass`` turns into a bundle. The student weights are copied unchanged.

With no override the refit reproduces the source checkpoint's DS statistics and threshold (the same dev
clips, the same windows): the control that the variants differ only by what they override.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.evaluation.metrics import eer

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError
from .data import AudioCache, DataError, read_manifest
from .model import DS_POOLS, POOLINGS
from .scoring import calibration_from_windows, fit_ds
from .trainer import DevSet, load_model

OVERRIDABLE = ("ds_pool", "levels", "pooling", "topk_fraction")


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` -> ``(key, value)`` with the value typed for its key; a clear error otherwise."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or key not in OVERRIDABLE:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with KEY one of {OVERRIDABLE}")
    value = value.strip()
    if key == "levels":
        try:
            levels = [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--set {text!r}: levels is a comma-separated list of 0, 1, 2") from None
        if not levels or any(v not in (0, 1, 2) for v in levels) or len(set(levels)) != len(levels):
            raise ConfigError(f"--set {text!r}: levels is a comma-separated list of 0, 1, 2")
        return key, sorted(levels)
    if key == "topk_fraction":
        try:
            frac = float(value)
        except ValueError:
            raise ConfigError(f"--set {text!r}: topk_fraction is a number in (0, 1]") from None
        if not 0 < frac <= 1:
            raise ConfigError(f"--set {text!r}: topk_fraction is a number in (0, 1]")
        return key, frac
    allowed = DS_POOLS if key == "ds_pool" else POOLINGS
    if value not in allowed:
        raise ConfigError(f"--set {text!r}: {key} must be one of {allowed}")
    return key, value


@torch.no_grad()
def _window_scores(model: Any, clips: list, cache: AudioCache, sc: Any) -> list[np.ndarray]:
    """Window scores of the configured scorer (the model's own forward: DS, levels and pooling as set)."""
    from .scoring import _batches

    sr = model.frontend.cfg.sample_rate
    per: dict[int, list[float]] = {}
    for idx, audio in _batches(
        clips,
        cache,
        int(sc.window_s * sr),
        int(sc.hop_s * sr),
        int(sc.min_audio_s * sr),
        sc.batch_size,
    ):
        score, _ = model(torch.from_numpy(audio))
        for ci, v in zip(idx, score.tolist(), strict=True):
            per.setdefault(ci, []).append(v)
    return [np.asarray(per[i]) for i in sorted(per)]


def refit(
    checkpoint: str | Path, out: str | Path, overrides: dict[str, Any], manifest: str | None = None
) -> dict[str, Any]:
    """Write ``out``: the checkpoint with ``overrides`` applied and DS and calibration refitted on dev."""
    model, cfg, info = load_model(checkpoint)
    state = load_checkpoint(checkpoint)
    for key, value in overrides.items():
        setattr(cfg.model, key, value)
    model.cfg = cfg.model
    if manifest:
        cfg.data.manifest = manifest
    torch.set_num_threads(cfg.train.threads)
    dev = DevSet(cfg, read_manifest(cfg.manifest_path))
    cache = AudioCache(cfg.model.frontend_config().sample_rate)
    sc = cfg.scoring
    n_ds = fit_ds(model, dev.ds_fit, cache, sc.window_s, sc.hop_s, sc.min_audio_s, sc.batch_size)
    scorer = f"{'ds' if cfg.model.ds_enabled else 'plain'}_{cfg.model.pooling}"
    real = _window_scores(model, dev.real, cache, sc)
    spoof = _window_scores(model, dev.spoof, cache, sc)
    if not real or not spoof:
        raise DataError(f"{cfg.manifest_path}: dev split: no clip long enough to score in one of the classes")
    r = np.array([w.mean() for w in real])
    s = np.array([w.mean() for w in spoof])
    dev_eer = eer(np.r_[r, s], np.r_[np.zeros(len(r)), np.ones(len(s))])
    rw, sw = np.concatenate(real), np.concatenate(spoof)
    cal = calibration_from_windows(rw, sw, sc.threshold_quantile)
    cal["fitted_on"] = (
        f"threshold: {100 * sc.threshold_quantile:g}th percentile of {len(rw)} held-out real dev windows "
        f"({len(real)} clips); probability: logistic fit of those vs {len(sw)} dev spoof windows; refitted "
        f"from {Path(checkpoint).name} with {overrides or 'no override'}"
    )
    dev_res = {"ds_windows": n_ds, "eer": {scorer: dev_eer}, "calibration": {scorer: cal}}
    payload = dict(state)
    payload["config"] = json.dumps(cfg.to_dict())
    payload["ds"] = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("ds_")}
    payload["dev"] = json.dumps(dev_res)
    payload["refit"] = json.dumps({"from": str(checkpoint), "overrides": overrides})
    save_checkpoint(payload, out)
    return {
        "out": str(out),
        "scorer": scorer,
        "overrides": overrides,
        "dev_eer": dev_eer,
        "threshold": cal["threshold"],
        "ds_windows": n_ds,
        "dev_clips": {"ds_fit": len(dev.ds_fit), "real": len(real), "spoof": len(spoof)},
        "source_dev_eer": info["dev"].get("eer", {}).get(scorer),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.oneclass.refit", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--checkpoint", required=True, help="a selected checkpoint (best.pt of a run)")
    p.add_argument("--out", required=True, help="checkpoint to write (then: python -m export oneclass)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help=f"override, KEY in {OVERRIDABLE}"
    )
    p.add_argument("--manifest", default=None, help="override data.manifest (the dev split comes from it)")
    args = p.parse_args(argv)
    try:
        overrides = dict(parse_override(t) for t in args.set)
        res = refit(args.checkpoint, args.out, overrides, args.manifest)
    except (ConfigError, CheckpointError, DataError, ValueError) as exc:
        print(f"refit: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
