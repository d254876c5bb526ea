"""Fitting the fusion: multivariate logistic regression in numpy (Newton's method with a small L2 penalty).

Why logistic regression: the fused output must be a calibrated probability (the runtime's verdict machine
thresholds probabilities), the two scores live on unrelated scales (an anomaly score, a logit), and a dev
split has only hundreds of clips, which a two-weight model cannot overfit. Features are standardised before
the fit (so the penalty treats both alike) and the weights are mapped back to raw scores, so the runtime
applies ``z = bias + w . s`` to the bundles' outputs as they are. The L2 penalty keeps the weights finite
when the dev split is separable (an in-domain dev set often is).

The fit uses *window* scores, because the runtime fuses per window; clip scores in reports are then the mean
of fused window logits, exactly as for a single detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_guard.backends.fused import FusionMember, FusionSpec, sha256_file


class FusionError(ValueError):
    """The fusion cannot be fitted (one class missing, non-finite scores); the message says which."""


@dataclass(frozen=True)
class LogisticFit:
    weights: np.ndarray  # on raw scores
    bias: float
    iterations: int

    def logit(self, x: np.ndarray) -> np.ndarray:
        return self.bias + np.asarray(x, dtype=np.float64) @ self.weights


def fit_logistic_regression(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 100) -> LogisticFit:
    """Fit ``p(y=1 | x) = sigmoid(b + w . x)``; ``x [N, D]`` raw scores, ``y [N]`` in {0, 1}.

    Class-balanced: each class gets total weight 1/2, so the bias reflects the scores and not the ratio of
    real to synthetic windows in the dev split (which says nothing about the calls a user will see).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise FusionError(f"scores {x.shape} and labels {y.shape} do not match")
    if not np.all(np.isfinite(x)):
        raise FusionError("scores contain NaN or infinite values")
    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    if n_pos == 0 or n_neg == 0:
        raise FusionError(f"need windows of both classes to fit a fusion (real {n_neg}, synthetic {n_pos})")
    sample_w = np.where(y == 1, 0.5 / n_pos, 0.5 / n_neg)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std < 1e-12] = 1.0
    z = np.c_[(x - mean) / std, np.ones(len(x))]
    d = z.shape[1]
    reg = np.full(d, l2)
    reg[-1] = 0.0
    w = np.zeros(d)
    it = 0
    for _ in range(iters):
        it += 1
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -60, 60)))
        g = z.T @ (sample_w * (p - y)) + reg * w
        h = (z * (sample_w * p * (1 - p))[:, None]).T @ z + np.diag(reg + 1e-12)
        step = np.linalg.solve(h, g)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    raw_w = w[:-1] / std
    bias = float(w[-1] - np.sum(raw_w * mean))
    return LogisticFit(weights=raw_w, bias=bias, iterations=it)


def fit_spec(
    name: str, bundles: dict[str, Path], real_windows: np.ndarray, spoof_windows: np.ndarray,
    threshold_quantile: float = 0.95, fitted_on: str = "", l2: float = 1e-2, extra: dict | None = None,
) -> FusionSpec:  # fmt: skip
    """A fusion spec for ``bundles`` (role -> path, in column order) from dev window scores ``[N, D]``.

    The threshold is the ``threshold_quantile`` of the fused logits of the real dev windows, the same rule as
    each detector's own threshold, so the pair flags the same share of real dev speech as either alone would.
    """
    real = np.asarray(real_windows, dtype=np.float64)
    spoof = np.asarray(spoof_windows, dtype=np.float64)
    fit = fit_logistic_regression(np.r_[real, spoof], np.r_[np.zeros(len(real)), np.ones(len(spoof))], l2=l2)
    threshold = float(np.quantile(fit.logit(real), threshold_quantile))
    members = tuple(FusionMember(role, Path(p).name, sha256_file(p)) for role, p in bundles.items())
    return FusionSpec(
        name=name,
        members=members,
        weights=tuple(float(v) for v in fit.weights),
        bias=fit.bias,
        threshold=threshold,
        explanation="oneclass" if "oneclass" in bundles else next(iter(bundles)),
        fitted_on=fitted_on
        or (
            f"logistic regression on {len(real)} real and {len(spoof)} synthetic dev windows; threshold = "
            f"{100 * threshold_quantile:g}th percentile of the fused real dev windows"
        ),
        extra=dict(extra or {}),
    )
