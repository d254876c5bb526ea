"""Detection metrics (EER, ROC-AUC, error rates at a threshold) on scores where higher = more likely fake.

Two EERs are reported. ``eer`` follows the ASVspoof ``compute_det_curve`` recipe that AntiDeepfake's
corrected ``evaluation.py`` uses (mean of miss and false-alarm rates at the closest crossing), so numbers
compare with the AntiDeepfake tables; ``eer_interpolated`` is the one-class detector's definition
(:mod:`training.evaluation.metrics`, linear interpolation between the bracketing ROC points), so numbers
compare with the one-class reports. Both are invariant to which class is called "target". AUC is the
Mann-Whitney statistic of :mod:`training.evaluation.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from training.evaluation import metrics as shared_metrics


def det_curve(fake_scores: np.ndarray, real_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss rate (fakes passed as real) and false-alarm rate (reals flagged) for every threshold.

    A clip is flagged as fake when its score is strictly above the threshold.
    """
    scores = np.concatenate([fake_scores, real_scores]).astype(np.float64)
    labels = np.concatenate([np.ones(len(fake_scores)), np.zeros(len(real_scores))])
    order = np.argsort(scores, kind="mergesort")
    labels = labels[order]
    fakes_at_or_below = np.cumsum(labels)
    reals_at_or_below = np.arange(1, len(labels) + 1) - fakes_at_or_below
    miss = np.concatenate([[0.0], fakes_at_or_below / max(len(fake_scores), 1)])
    false_alarm = np.concatenate([[1.0], 1.0 - reals_at_or_below / max(len(real_scores), 1)])
    thresholds = np.concatenate([[scores[order[0]] - 1e-3], scores[order]])
    return miss, false_alarm, thresholds


def eer(
    fake_scores: Sequence[float] | np.ndarray, real_scores: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    """(equal error rate, threshold at the crossing). NaN when a class is empty."""
    f, r = np.asarray(fake_scores, dtype=np.float64), np.asarray(real_scores, dtype=np.float64)
    if f.size == 0 or r.size == 0:
        return float("nan"), float("nan")
    miss, fa, thr = det_curve(f, r)
    i = int(np.argmin(np.abs(miss - fa)))
    return float((miss[i] + fa[i]) / 2), float(thr[i])


def auc(fake_scores: Sequence[float] | np.ndarray, real_scores: Sequence[float] | np.ndarray) -> float:
    """ROC-AUC = P(score of a random fake > score of a random real), ties counted half; NaN when a class is
    empty. Computed by :func:`training.evaluation.metrics.auc` (label 1 = spoof there)."""
    f, r = np.asarray(fake_scores, dtype=np.float64), np.asarray(real_scores, dtype=np.float64)
    if f.size == 0 or r.size == 0:
        return float("nan")
    labels = np.concatenate([np.ones(f.size, dtype=int), np.zeros(r.size, dtype=int)])
    return shared_metrics.auc(np.concatenate([f, r]), labels)


@dataclass
class Row:
    """One line of an evaluation table."""

    name: str
    n_real: int
    n_fake: int
    eer: float
    auc: float
    threshold_at_eer: float
    miss_at_threshold: float  # fakes passed as real at the shipped threshold
    false_alarm_at_threshold: float  # reals flagged as fake at the shipped threshold
    eer_interpolated: float = float("nan")  # the one-class reports' EER definition

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def table_row(name: str, scores: np.ndarray, labels: np.ndarray, threshold: float) -> Row:
    """Metrics of one group; ``labels`` use AntiDeepfake's convention (1 = real, 0 = fake)."""
    fake, real = scores[labels == 0], scores[labels == 1]
    e, t = eer(fake, real)
    miss = float(np.mean(fake <= threshold)) if fake.size else float("nan")
    fa = float(np.mean(real > threshold)) if real.size else float("nan")
    interpolated = float("nan")
    if fake.size and real.size:
        interpolated = shared_metrics.eer(scores, (labels == 0).astype(int))  # that module: 1 = spoof
    return Row(name, int(real.size), int(fake.size), e, auc(fake, real), t, miss, fa, interpolated)
