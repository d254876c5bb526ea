"""Evaluation of a one-class run on the reported split: the tables the model card quotes.

Every scorer (DS on/off x max/top-k/mean) that has a dev threshold is measured from the same teacher/student
pass, on each channel (wideband G.722 and telephone mu-law 8 kHz) and pooled, per spoof system and family,
with bootstrap 95 % CIs on every EER. False alarms are measured on the real clips of each source and speaker
at the *shipped* threshold of that scorer (fitted on dev, never on this split). A clip's score is the mean of
its window scores (windows cut as the runtime cuts them); the threshold, fitted on dev windows, applies to it
unchanged.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation.report import ReportWriter, detection_metrics, pct, pct_ci

from .data import AudioCache, DataError, read_manifest, require, select, subsample
from .scoring import SCORERS, ClipScores, score_clips
from .trainer import load_model

SCORER_NAMES = {
    "ds_max": "DS, max",
    "ds_topk": "DS, top-k mean",
    "plain_max": "plain STFPM (product, max)",
    "plain_topk": "plain STFPM (product, top-k mean)",
    "ds_mean": "DS, mean",
    "plain_mean": "plain STFPM (product, mean)",
}


def _split_scores(scored: list[ClipScores], scorer: str) -> tuple[np.ndarray, np.ndarray]:
    real = np.array([c.clip_score(scorer) for c in scored if c.clip.is_real])
    spoof = np.array([c.clip_score(scorer) for c in scored if not c.clip.is_real])
    return real, spoof


def _plot_map(model: Any, clip_scores: ClipScores, cache: AudioCache, path: Path, title: str) -> None:
    """Log-mel image of the clip's first window with its anomaly map below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    fe = model.frontend.cfg
    audio = cache.get(clip_scores.clip)[: int(2.0 * fe.sample_rate)]
    x = torch.from_numpy(audio[None, :].astype(np.float32))
    with torch.no_grad():
        img = model.frontend(x)[0, 0].numpy()
        score, amap = model(x)
    geom = model.map_geometry()
    fig, axes = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    dur = len(audio) / fe.sample_rate
    axes[0].imshow(img, origin="lower", aspect="auto", extent=(0, dur, 0, fe.n_mels), cmap="magma")
    axes[0].set_ylabel("mel band")
    axes[0].set_title(f"{title}: {clip_scores.clip.path.name} ({clip_scores.clip.group})")
    m = amap[0].numpy()
    steps = m.shape[1] * geom["frame_step_s"]
    im = axes[1].imshow(m, origin="lower", aspect="auto", extent=(0, steps, 0, m.shape[0]), cmap="inferno")
    ticks = list(range(0, m.shape[0], 4))
    axes[1].set_yticks([t + 0.5 for t in ticks], [f"{geom['freq_hz'][t] / 1000:.1f}k" for t in ticks])
    axes[1].set_ylabel("Hz")
    axes[1].set_xlabel(f"s  (window score {float(score[0]):.3f})")
    fig.colorbar(im, ax=axes[1], fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate_run(
    run_dir: str | Path,
    checkpoint: str | Path | None = None,
    manifest: str | None = None,
    split: str | None = None,
    max_clips: int | None = None,
    n_boot: int = 200,
    stem: str = "report",
) -> Path:
    """Score the eval split and write ``report.md``, ``metrics.json``, DET curves and example maps."""
    run_dir = Path(run_dir)
    ckpt = Path(checkpoint) if checkpoint else run_dir / "best.pt"
    model, cfg, info = load_model(ckpt)
    if manifest:
        cfg.data.manifest = manifest
    split = split or cfg.data.eval_split
    limit = max_clips if max_clips is not None else cfg.data.max_eval_clips
    clips = read_manifest(cfg.manifest_path)
    channels = sorted({c.channel for c in clips if c.split == split}) or [""]
    chosen = []
    for ch in channels:
        chan = [c for c in clips if c.split == split and c.channel == ch]
        real = require(
            select(chan, label="real"), f"split {split!r} channel {ch!r}, label real", cfg.manifest_path
        )
        spoof = require(
            select(chan, label="spoof"), f"split {split!r} channel {ch!r}, label spoof", cfg.manifest_path
        )
        chosen += subsample(real, limit, key="eval-real") + subsample(spoof, limit, key="eval-spoof")
    cache = AudioCache(model.frontend.cfg.sample_rate)
    sc = cfg.scoring
    scored = score_clips(model, chosen, cache, sc.window_s, sc.hop_s, sc.min_audio_s, sc.batch_size)
    if not scored:
        raise DataError(f"{cfg.manifest_path}: no clip of split {split!r} is long enough to score")
    shipped = f"{'ds' if cfg.model.ds_enabled else 'plain'}_{cfg.model.pooling}"
    cals = info["dev"]["calibration"]

    rw = ReportWriter(run_dir, f"One-class STFPM evaluation: {cfg.name} (split {split!r})")
    metrics: dict[str, Any] = {
        "run": cfg.name,
        "checkpoint": str(ckpt),
        "epoch": info["epoch"],
        "steps": info["steps"],
        "split": split,
        "shipped_scorer": shipped,
        "dev": info["dev"],
        "clips_scored": len(scored),
        "clip_score": "mean of window scores",
        "scorers": {},
    }
    # a refit checkpoint's dev results hold its shipped scorer only (selection was the source run's)
    dev_scorer = cfg.train.select_scorer if cfg.train.select_scorer in info["dev"]["eer"] else shipped
    rw.text(
        f"Checkpoint `{ckpt.name}` (epoch {info['epoch']}, {info['steps']} steps), selected on the dev split "
        f"(dev EER of `{dev_scorer}`: {pct(info['dev']['eer'].get(dev_scorer))}). "
        f"Scored {len(scored)} clips of split `{split}`; a clip's score is the mean of its "
        f"{sc.window_s:g} s window scores (hop {sc.hop_s:g} s). Thresholds are the shipped ones, fitted on "
        f"dev (95th percentile of held-out real dev windows). EER and AUC carry bootstrap 95 % CIs ({n_boot} "
        "resamples within each class); rates carry Wilson 95 % CIs.\n\nTraining data: "
        f"{info.get('data', cfg.data.manifest)}"
    )
    # 1. every scorer with a dev threshold x channel (a refit checkpoint carries its shipped scorer's only)
    rows = []
    for scorer in (s for s in SCORERS if s in cals):
        thr = cals[scorer]["threshold"]
        per: dict[str, Any] = {"threshold": thr, "channels": {}}
        for ch in [*channels, "pooled"]:
            sub = scored if ch == "pooled" else [c for c in scored if c.clip.channel == ch]
            real, spoof = _split_scores(sub, scorer)
            m = detection_metrics(real, spoof, thr, n_boot=n_boot)
            per["channels"][ch] = {"pooled": m}
            rows.append(
                [
                    SCORER_NAMES[scorer] + (" (shipped)" if scorer == shipped else ""),
                    ch,
                    *rw.detection_rows({"": m})[0][1:],
                ]
            )
        metrics["scorers"][scorer] = per
    rw.table(
        "All scorers, per channel (DS on vs off, max vs top-k vs mean)",
        [
            "scorer",
            "channel",
            "real / spoof",
            "EER [95 % CI]",
            "AUC",
            "false alarms at threshold",
            "detected",
        ],
        rows,
    )
    # 2. shipped scorer: per system / family / source / speaker
    thr = cals[shipped]["threshold"]
    for ch in [*channels, "pooled"]:
        sub = scored if ch == "pooled" else [c for c in scored if c.clip.channel == ch]
        real_sub = [c for c in sub if c.clip.is_real]
        real_scores = np.array([c.clip_score(shipped) for c in real_sub])
        out = metrics["scorers"][shipped]["channels"][ch]
        for key, attr in (("per_system", "system"), ("per_family", "family")):
            groups: dict[str, list[float]] = defaultdict(list)
            for c in sub:
                if not c.clip.is_real:
                    groups[getattr(c.clip, attr) or "unknown"].append(c.clip_score(shipped))
            table = {
                g: detection_metrics(real_scores, np.array(v), thr, n_boot=n_boot)
                for g, v in sorted(groups.items())
            }
            out[key] = table
            if key == "per_system" or ch == "pooled":
                rw.table(
                    f"{SCORER_NAMES[shipped]}: {key.replace('_', ' ')}, channel {ch} (vs all real clips)",
                    list(rw.DETECTION_HEADERS),
                    rw.detection_rows(table),
                )
        for key, attr in (("false_alarms_per_source", "source"), ("false_alarms_per_speaker", "speaker")):
            groups = defaultdict(list)
            for c in real_sub:
                groups[getattr(c.clip, attr) or "unknown"].append(c.clip_score(shipped))
            table = {
                g: detection_metrics(np.array(v), np.array([]), thr, n_boot=0)
                for g, v in sorted(groups.items())
            }
            out[key] = table
            if key == "false_alarms_per_source":
                rw.table(
                    f"False alarms on real speech per source at the shipped threshold ({thr:.4g}), "
                    f"channel {ch}",
                    ["source", "real clips", "false alarms [95 % CI]"],
                    [
                        [g, m["n_real"], pct_ci(m.get("false_alarm"), m.get("false_alarm_ci"))]
                        for g, m in table.items()
                    ],
                )
    # 3. plots
    for ch in channels:
        sub = [c for c in scored if c.clip.channel == ch]
        curves = {SCORER_NAMES[s]: _split_scores(sub, s) for s in SCORERS}
        rw.det_plot(f"det_{ch or 'all'}.png", curves, f"DET, channel {ch}: DS on/off, max/top-k/mean")
        real, _ = _split_scores(sub, shipped)
        sys_curves = {}
        for system in sorted({c.clip.system for c in sub if not c.clip.is_real}):
            spoof = np.array(
                [c.clip_score(shipped) for c in sub if not c.clip.is_real and c.clip.system == system]
            )
            sys_curves[system] = (real, spoof)
        rw.det_plot(f"det_systems_{ch or 'all'}.png", sys_curves, f"DET per system, channel {ch}")
    # 4. example maps: the median-scoring real clip and the median-scoring spoof clip of the first channel
    first = [c for c in scored if c.clip.channel == channels[0]]
    for label, want_real in (("real", True), ("synthetic", False)):
        group = sorted((c for c in first if c.clip.is_real == want_real), key=lambda c: c.clip_score(shipped))
        if group:
            name = f"map_{label}.png"
            _plot_map(
                model, group[len(group) // 2], cache, run_dir / name, f"example {label} clip (median score)"
            )
            rw.image(name, f"anomaly map of a {label} clip")
    rw.metrics = metrics
    md, _ = rw.write(stem)
    (run_dir / f"{stem}_clip_scores.json").write_text(
        json.dumps(
            [
                {
                    "path": str(c.clip.path),
                    "label": c.clip.label,
                    "system": c.clip.system,
                    "channel": c.clip.channel,
                    "source": c.clip.source,
                    **{s: c.clip_score(s) for s in SCORERS},
                }
                for c in scored
            ]
        )
    )
    return md
