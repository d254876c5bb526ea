"""Scoring clips with an STFPM model, fitting DS statistics and the decision calibration.

Clips are cut into windows exactly as the runtime does (``data.windows``); windows of equal length are
batched. One teacher/student pass per window yields all six scorers (DS on/off x max/top-k/mean), so DS on/off
and the pooling choice are compared on identical features.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .data import AudioCache, Clip, windows
from .model import STFPM, DSAccumulator

SCORERS = ("ds_max", "ds_topk", "ds_mean", "plain_max", "plain_topk", "plain_mean")


@dataclass
class ClipScores:
    """Window scores of one clip for every scorer."""

    clip: Clip
    windows: dict[str, np.ndarray]

    def clip_score(self, scorer: str) -> float:
        """A clip's score: the mean of its window scores (steadier than the max over a long clip)."""
        return float(np.mean(self.windows[scorer]))


def _batches(
    clips: list[Clip],
    cache: AudioCache,
    window: int,
    hop: int,
    min_samples: int,
    batch: int,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
):
    """Yield ``(clip_indices, audio [B, S])`` with equal-length windows in each batch."""
    pending: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for ci, clip in enumerate(clips):
        audio = cache.get(clip)
        if transform is not None:
            audio = transform(audio)
        for w in windows(audio, window, hop, min_samples):
            pending[len(w)].append((ci, w))
            if len(pending[len(w)]) >= batch:
                items = pending.pop(len(w))
                yield [i for i, _ in items], np.stack([x for _, x in items])
    for items in pending.values():
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            yield [i for i, _ in chunk], np.stack([x for _, x in chunk])


@torch.no_grad()
def score_clips(
    model: STFPM,
    clips: list[Clip],
    cache: AudioCache,
    window_s: float,
    hop_s: float,
    min_audio_s: float,
    batch: int = 16,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    progress: Callable | None = None,
) -> list[ClipScores]:
    """Score every window of every clip; clips shorter than ``min_audio_s`` are left out."""
    sr = model.frontend.cfg.sample_rate
    model.eval()
    acc: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for idx, audio in _batches(
        clips, cache, int(window_s * sr), int(hop_s * sr), int(min_audio_s * sr), batch, transform
    ):
        out = model.variants(torch.from_numpy(audio))
        for name, values in out.items():
            for ci, v in zip(idx, values.tolist(), strict=True):
                acc[ci][name].append(v)
        if progress is not None:
            progress(len(idx))
    return [
        ClipScores(clips[ci], {k: np.asarray(v, dtype=np.float64) for k, v in acc[ci].items()})
        for ci in sorted(acc)
    ]


@torch.no_grad()
def fit_ds(
    model: STFPM,
    clips: list[Clip],
    cache: AudioCache,
    window_s: float,
    hop_s: float,
    min_audio_s: float,
    batch: int = 16,
) -> int:
    """Fit DS mean/std (pooled over time, or over time and frequency per ``model.cfg.ds_pool``) on real clips
    and install them; returns the number of windows."""
    sr = model.frontend.cfg.sample_rate
    model.eval()
    acc = DSAccumulator(pool_freq=model.cfg.ds_pool == "time_freq")
    n = 0
    for _, audio in _batches(clips, cache, int(window_s * sr), int(hop_s * sr), int(min_audio_s * sr), batch):
        acc.add(model.discrepancies(torch.from_numpy(audio)))
        n += len(audio)
    if n == 0:
        raise ValueError("no windows to fit Discrepancy Scaling on (all clips shorter than the minimum)")
    mu, sigma = acc.finish()
    model.set_ds_stats(mu, sigma)
    return n


def fit_logistic(scores: np.ndarray, labels: np.ndarray, iters: int = 100) -> tuple[float, float]:
    """1-D logistic regression ``p(spoof) = sigmoid((s - center) / scale)`` by Newton's method.

    Returns ``(center, scale)``. Scores are standardised first, with a small L2 penalty so separable data (a
    dev
    set a detector gets perfectly right) still gives a finite, sensible slope.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    m, sd = float(s.mean()), float(s.std() or 1.0)
    z = (s - m) / sd
    w = np.zeros(2)  # slope, bias
    lam = 1e-2
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(w[0] * z + w[1], -60, 60)))
        g = np.array([np.sum((p - y) * z) + lam * w[0], np.sum(p - y)])
        r = p * (1 - p)
        h = np.array([[np.sum(r * z * z) + lam, np.sum(r * z)], [np.sum(r * z), np.sum(r) + 1e-9]])
        step = np.linalg.solve(h, g)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    slope = w[0] if abs(w[0]) > 1e-6 else 1e-6
    scale = sd / slope
    center = m - w[1] * sd / slope
    if not math.isfinite(scale) or scale <= 0:
        # scores do not increase with "spoof": fall back to the real-score spread so probabilities stay
        # defined
        scale, center = sd, m
    return float(center), float(scale)


def calibration_from_windows(
    real_windows: np.ndarray, spoof_windows: np.ndarray | None, quantile: float
) -> dict[str, Any]:
    """Threshold = ``quantile`` of real window scores; logistic center/scale fitted on real vs spoof
    windows."""
    real = np.asarray(real_windows, dtype=np.float64)
    if real.size == 0:
        raise ValueError("no real windows to calibrate on")
    threshold = float(np.quantile(real, quantile))
    if spoof_windows is not None and len(spoof_windows):
        s = np.concatenate([real, np.asarray(spoof_windows, dtype=np.float64)])
        y = np.concatenate([np.zeros(len(real)), np.ones(len(spoof_windows))])
        center, scale = fit_logistic(s, y)
    else:
        center = threshold
        scale = float(np.std(real) or 1.0) / 2.0
    spread = float(np.quantile(real, 0.9) - np.quantile(real, 0.1))
    # ``reference`` lets ``stream-guard calibrate`` carry the probability mapping over to refitted scores.
    return {
        "threshold": threshold,
        "center": center,
        "scale": scale,
        "reference": {"median": float(np.median(real)), "spread": spread},
    }
