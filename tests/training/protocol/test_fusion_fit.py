"""Fusion fitting: the logistic regression recovers known weights, stays finite on separable data, and the
spec it writes is what FusedBackend reads."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from stream_guard.backends.fused import read_fusion, sha256_file
from training.fusion.fit import FusionError, fit_logistic_regression, fit_spec


def test_recovers_known_weights_on_raw_scales() -> None:
    rng = np.random.default_rng(0)
    n = 40000
    x = np.c_[rng.normal(5.0, 3.0, n), rng.normal(-2.0, 0.5, n)]  # unrelated scales, like anomaly vs logit
    true_w, true_b = np.array([0.8, -2.0]), -7.0
    p = 1 / (1 + np.exp(-(true_b + x @ true_w)))
    y = (rng.random(n) < p).astype(float)
    # the fit is class-balanced: reweighting shifts only the bias, by the log ratio of the class counts
    fit = fit_logistic_regression(x, y, l2=1e-6)
    np.testing.assert_allclose(fit.weights, true_w, rtol=0.05)
    assert fit.bias == pytest.approx(true_b + np.log((1 - y).sum() / y.sum()), abs=0.15)
    np.testing.assert_allclose(fit.logit(x[:3]), fit.bias + x[:3] @ fit.weights)


def test_separable_data_gives_finite_weights_and_one_class_is_an_error() -> None:
    x = np.r_[np.zeros((20, 2)), np.ones((20, 2))]
    y = np.r_[np.zeros(20), np.ones(20)]
    fit = fit_logistic_regression(x, y)
    assert np.all(np.isfinite(fit.weights)) and np.all(fit.weights > 0)
    with pytest.raises(FusionError, match="both classes"):
        fit_logistic_regression(x, np.zeros(40))
    with pytest.raises(FusionError, match="NaN"):
        fit_logistic_regression(np.full((4, 2), np.nan), np.r_[0, 0, 1, 1])


def test_spec_names_bundles_by_hash_and_round_trips(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bundles import build_bundle

    a = build_bundle(tmp_path / "oneclass.onnx")
    b = build_bundle(tmp_path / "supervised.onnx", kind="time")
    rng = np.random.default_rng(1)
    real = rng.normal(0, 1, (300, 2))
    spoof = rng.normal(1.5, 1, (300, 2))
    spec = fit_spec("pair", {"oneclass": a, "supervised": b}, real, spoof, threshold_quantile=0.9)
    fused_real = spec.logit(real)
    assert np.mean(fused_real >= spec.threshold) == pytest.approx(0.1, abs=0.01)
    path = spec.write(tmp_path / "pair.fusion.json")
    back = read_fusion(path)
    assert back == spec
    assert [m.sha256 for m in back.members] == [sha256_file(a), sha256_file(b)]
    assert back.explanation == "oneclass"
