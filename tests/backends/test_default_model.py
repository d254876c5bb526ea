"""The default model is the embedded fused pair, everywhere; its members stay reachable by short name; the
probability, the threshold and the verdict a stream reports never contradict each other."""

from __future__ import annotations

import ast
import fnmatch
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from bundles import speechlike

from stream_guard import Engine, scan_array
from stream_guard.backends import FusedBackend, OnnxRuntimeBackend, load_backend
from stream_guard.backends.fused import read_fusion, sha256_file
from stream_guard.bundle import (
    EMBEDDED_MODELS,
    BundleError,
    Calibration,
    default_bundle_path,
    default_model_path,
    embedded_model_path,
    resolve_bundle_path,
    resolve_model_path,
)
from stream_guard.events import SummaryEvent

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "stream_guard" / "models"


def test_the_default_model_is_the_embedded_fusion_file() -> None:
    path = default_model_path()
    assert path.name == "default.fusion.json" and path.parent == MODELS
    assert resolve_model_path(None) == path
    assert resolve_model_path("default") == path == resolve_model_path("fused")
    spec = read_fusion(path)
    roles = {m.role: m.file for m in spec.members}
    assert roles == {"oneclass": "default.onnx", "supervised": "supervised.onnx"}
    assert spec.explanation == "oneclass"


def test_short_names_reach_each_member_alone() -> None:
    assert resolve_model_path("oneclass") == MODELS / "default.onnx" == default_bundle_path()
    assert resolve_model_path("supervised") == MODELS / "supervised.onnx"
    with pytest.raises(BundleError, match="not an embedded model"):
        embedded_model_path("nope")
    oneclass = load_backend("oneclass", provider="cpu")
    supervised = load_backend("supervised", provider="cpu")
    assert isinstance(oneclass, OnnxRuntimeBackend) and oneclass.metadata.family == "stfpm"
    assert isinstance(supervised, OnnxRuntimeBackend) and supervised.metadata.family == "supervised"


def test_load_backend_without_a_model_runs_both_members_and_shows_the_one_class_map() -> None:
    backend = load_backend(None, provider="cpu", threads=1)
    assert isinstance(backend, FusedBackend)
    assert backend.metadata.family == "fused" and backend.metadata.score_kind == "logit"
    assert [m.file for m in backend.spec.members] == ["default.onnx", "supervised.onnx"]
    x = np.stack([speechlike(2.0, level=0.05, seed=1), speechlike(2.0, level=0.2, seed=2)])
    score, amap = backend.infer(x)
    members = backend.member_scores(x)
    expected = backend.spec.bias + members @ np.asarray(backend.spec.weights)
    np.testing.assert_allclose(score, expected, rtol=1e-5, atol=1e-5)
    oneclass = load_backend("oneclass", provider="cpu", threads=1)
    np.testing.assert_allclose(amap, oneclass.infer(x)[1], rtol=1e-5, atol=1e-5)
    assert amap.shape[:2] == (2, len(backend.metadata.map_axes.freq_hz))


def test_the_engine_default_is_the_fused_pair() -> None:
    import asyncio

    async def main() -> str:
        async with Engine.from_bundle(None, provider="cpu", threads=1) as engine:
            return engine.metadata.name

    assert asyncio.run(main()) == read_fusion(default_model_path()).name


def test_a_single_bundle_api_refuses_the_fused_default_with_directions() -> None:
    with pytest.raises(BundleError, match="fused pair of bundles.*--model oneclass"):
        resolve_bundle_path(None)
    with pytest.raises(BundleError, match="fused pair"):
        OnnxRuntimeBackend(None)


def test_the_fusion_file_pins_the_shipped_bundles() -> None:
    spec = read_fusion(default_model_path())
    for m in spec.members:
        assert sha256_file(MODELS / m.file) == m.sha256, m.file


def test_package_data_ships_the_fusion_file_and_both_bundles() -> None:
    # (tomllib is Python >= 3.11; the runtime supports 3.10, so read the one table line directly)
    text = (REPO / "pyproject.toml").read_text()
    table = text.split("[tool.setuptools.package-data]", 1)[1]
    patterns = ast.literal_eval(re.search(r"^stream_guard\s*=\s*(\[.*?\])", table, re.M | re.S).group(1))
    shipped = [f"models/{name}" for name in EMBEDDED_MODELS.values()]
    shipped += [f"models/{m.file}" for m in read_fusion(default_model_path()).members]
    for rel in shipped:
        assert (REPO / "stream_guard" / rel).is_file(), rel
        assert any(fnmatch.fnmatch(rel, pat) for pat in patterns), rel


def test_threshold_probability_is_the_calibration_applied_to_the_threshold() -> None:
    cal = Calibration(threshold=0.617, center=0.0, scale=1.0)
    assert cal.threshold_probability == pytest.approx(1.0 / (1.0 + math.exp(-0.617)))
    assert Calibration(threshold=3.0, center=3.0, scale=2.0).threshold_probability == pytest.approx(0.5)
    fused = load_backend(None, provider="cpu").metadata.calibration
    assert fused.threshold == read_fusion(default_model_path()).threshold
    assert fused.threshold_probability > 0.5  # an operating point on real speech, not 0.5


@pytest.mark.parametrize("model", [None, "oneclass"])
def test_summary_verdict_probability_and_threshold_agree(model: str | None) -> None:
    """Whatever the clip scores, a summary reads consistently: synthetic exactly when its probability is at
    or above the threshold probability it carries (and its raw score at or above the raw threshold)."""
    meta = load_backend(model, provider="cpu").metadata
    for seed, level in enumerate((0.003, 0.02, 0.08, 0.3)):
        events = scan_array(speechlike(3.0, level=level, seed=seed), 16000, model, provider="cpu", threads=1)
        summary = events[-1]
        assert isinstance(summary, SummaryEvent)
        assert summary.threshold == pytest.approx(meta.calibration.threshold)
        assert summary.threshold_probability == pytest.approx(meta.calibration.threshold_probability)
        if summary.score is None:  # every window abstained (too quiet): no probability, no verdict
            assert summary.probability is None and summary.verdict == "uncertain"
            continue
        assert summary.probability == pytest.approx(meta.calibration.probability(summary.score))
        above = summary.probability >= summary.threshold_probability
        assert above == (summary.score >= summary.threshold)
        assert summary.verdict == ("synthetic" if above else "real")
        doc = json.loads(summary.to_json())
        assert doc["threshold_probability"] == pytest.approx(summary.threshold_probability)
