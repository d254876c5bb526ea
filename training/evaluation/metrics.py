"""Detection metrics with the convention *higher score = more likely synthetic* (label 1 = spoof, 0 = real).

- :func:`eer`: equal error rate, where the false-alarm rate on real equals the miss rate on spoof, with linear
  interpolation between the two ROC points that bracket the crossing (exact for separable or tied scores).
- :func:`auc`: area under the ROC curve (the Mann-Whitney statistic; ties count one half).
- :func:`bootstrap_ci`: percentile interval of a metric over resamples drawn *within each class*, so every
  resample keeps both classes and their sizes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(int).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.shape}) and labels ({y.shape}) differ in length")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    if not np.any(y == 1) or not np.any(y == 0):
        raise ValueError("need scores of both classes (real = 0 and spoof = 1)")
    return s, y


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(far, miss, thresholds)`` for every distinct threshold, from 'flag nothing' to 'flag everything'.

    A clip is flagged when ``score >= threshold``. ``far`` is the fraction of real clips flagged, ``miss`` the
    fraction of spoof clips not flagged.
    """
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(1 - y)[distinct]
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    far = np.r_[0.0, fp / n_neg]
    miss = np.r_[1.0, 1.0 - tp / n_pos]
    thresholds = np.r_[np.inf, s[distinct]]
    return far, miss, thresholds


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate in [0, 1]."""
    far, miss, _ = roc_points(scores, labels)
    diff = miss - far  # decreasing from 1 to -1
    i = int(np.nonzero(diff <= 0)[0][0])
    if i == 0:
        return float(far[0])
    d0, d1 = diff[i - 1], diff[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(far[i - 1] + t * (far[i] - far[i - 1]))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random spoof outscores a random real clip."""
    s, y = _check(scores, labels)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks for ties
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def false_alarm_rate(real_scores: np.ndarray, threshold: float) -> float:
    """Fraction of real scores at or above the threshold."""
    r = np.asarray(real_scores, dtype=np.float64)
    if r.size == 0:
        raise ValueError("no real scores")
    return float(np.mean(r >= threshold))


def detection_rate(spoof_scores: np.ndarray, threshold: float) -> float:
    """Fraction of spoof scores at or above the threshold."""
    s = np.asarray(spoof_scores, dtype=np.float64)
    if s.size == 0:
        raise ValueError("no spoof scores")
    return float(np.mean(s >= threshold))


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    scores: np.ndarray,
    labels: np.ndarray,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric``, resampling within each class (deterministic for a
    seed)."""
    s, y = _check(scores, labels)
    pos, neg = np.nonzero(y == 1)[0], np.nonzero(y == 0)[0]
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        values[b] = metric(s[idx], y[idx])
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def proportion_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a rate ``k / n`` (false alarms, detections)."""
    if n == 0:
        return (float("nan"), float("nan"))
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def det_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(far, miss)`` on the probit (normal deviate) scale used by DET plots, clipped away from 0 and 1."""
    from statistics import NormalDist

    far, miss, _ = roc_points(scores, labels)
    nd = NormalDist()
    eps = 1e-4
    to_z = np.vectorize(lambda p: nd.inv_cdf(min(max(p, eps), 1 - eps)))
    return to_z(far), to_z(miss)
