"""Evaluation metrics against values computed by hand, and the report writer's files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.evaluation.metrics import auc, bootstrap_ci, eer, false_alarm_rate, proportion_ci, roc_points
from training.evaluation.report import ReportWriter, detection_metrics


def test_eer_and_auc_simple_cases() -> None:
    assert eer([0, 1], [0, 1]) == 0.0
    assert eer([1, 0], [0, 1]) == 1.0
    assert eer([1, 1], [0, 1]) == pytest.approx(0.5)
    assert auc([0, 1], [0, 1]) == 1.0
    assert auc([1, 1], [0, 1]) == 0.5
    # real 0.1 0.2 0.3 0.4 | spoof 0.35 0.5 0.6 0.7 -> one real above one spoof
    s = [0.1, 0.2, 0.3, 0.4, 0.35, 0.5, 0.6, 0.7]
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    assert eer(s, y) == pytest.approx(0.25)
    assert auc(s, y) == pytest.approx(15 / 16)


def test_eer_matches_gaussian_theory() -> None:
    rng = np.random.default_rng(0)
    s = np.r_[rng.normal(0, 1, 20000), rng.normal(2, 1, 20000)]
    y = np.r_[np.zeros(20000), np.ones(20000)]
    assert eer(s, y) == pytest.approx(0.1587, abs=0.01)  # Phi(-1)
    assert auc(s, y) == pytest.approx(0.9214, abs=0.01)  # Phi(2 / sqrt(2))


def test_roc_points_are_monotone() -> None:
    rng = np.random.default_rng(1)
    far, miss, thr = roc_points(rng.normal(size=50), rng.integers(0, 2, 50))
    assert far[0] == 0 and miss[0] == 1 and far[-1] == 1 and miss[-1] == 0
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(miss) <= 0) and np.all(np.diff(thr) < 0)


def test_bootstrap_is_deterministic_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(2)
    s = np.r_[rng.normal(0, 1, 300), rng.normal(1.5, 1, 300)]
    y = np.r_[np.zeros(300), np.ones(300)]
    lo, hi = bootstrap_ci(eer, s, y, n_boot=100, seed=3)
    assert (lo, hi) == bootstrap_ci(eer, s, y, n_boot=100, seed=3)
    assert lo < eer(s, y) < hi


def test_rates() -> None:
    assert false_alarm_rate([0.1, 0.5, 0.9, 1.0], 0.9) == 0.5
    lo, hi = proportion_ci(5, 100)
    assert lo < 0.05 < hi and lo >= 0.0 and hi < 0.15
    with pytest.raises(ValueError, match="both classes"):
        eer([1, 2], [0, 0])
    with pytest.raises(ValueError, match="NaN"):
        eer([np.nan, 1], [0, 1])


def test_report_writer(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    real, spoof = rng.normal(0, 1, 200), rng.normal(2, 1, 200)
    rw = ReportWriter(tmp_path, "demo")
    m = detection_metrics(real, spoof, threshold=1.645, n_boot=50)
    assert m["false_alarm"] == pytest.approx(np.mean(real >= 1.645))
    rw.table("pooled", list(rw.DETECTION_HEADERS), rw.detection_rows({"all": m}))
    rw.det_plot("det.png", {"a": (real, spoof)}, "DET")
    rw.metrics = {"pooled": m}
    md, js = rw.write()
    assert "| all | 200 / 200 |" in md.read_text()
    assert json.loads(js.read_text())["pooled"]["n_real"] == 200
    assert (tmp_path / "det.png").stat().st_size > 1000
