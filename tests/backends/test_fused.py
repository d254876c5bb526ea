"""FusedBackend: the fused score is the fusion file's logistic formula on the members' own scores, the map is
the one-class member's, and a fusion file that does not match its bundles is refused with a clear message."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from bundles import build_bundle, build_fused_pair, bundle_metadata

from stream_guard.backends import FusedBackend, OnnxRuntimeBackend, load_backend
from stream_guard.backends.fused import read_fusion
from stream_guard.bundle import BundleError


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a time x frequency 'oneclass' bundle, a time-track 'supervised' one and a fusion file."""
    return build_fused_pair(tmp_path_factory.mktemp("fused"))


def _audio(rng: np.random.Generator, batch: int, seconds: float) -> np.ndarray:
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    level = rng.uniform(0.02, 0.4, size=(batch, 1))
    return (level * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal((batch, n))).astype(np.float32)


def test_fused_score_is_the_logistic_formula_and_map_is_oneclass(pair: Path) -> None:
    backend = load_backend(pair, provider="cpu", threads=1)
    assert isinstance(backend, FusedBackend)
    oc = OnnxRuntimeBackend(pair.parent / "oneclass.onnx", provider="cpu", threads=1)
    sup = OnnxRuntimeBackend(pair.parent / "supervised.onnx", provider="cpu", threads=1)
    rng = np.random.default_rng(3)
    for batch, seconds in ((1, 2.0), (5, 2.0), (3, 0.5)):
        x = _audio(rng, batch, seconds)
        fused, amap = backend.infer(x)
        s_oc, m_oc = oc.infer(x)
        s_sup, _ = sup.infer(x)
        expected = 1.25 + 0.7 * s_oc.astype(np.float64) - 0.3 * s_sup.astype(np.float64)
        np.testing.assert_allclose(fused, expected, rtol=1e-6, atol=1e-5)
        assert np.array_equal(amap, m_oc)  # the explanation is the one-class map, untouched
        assert amap.ndim == 3
        # the runtime's probability is the logistic of the fused logit
        for z in fused:
            assert backend.metadata.calibration.probability(float(z)) == pytest.approx(1 / (1 + math.exp(-z)))
        # scores vary with the input, so the check above is not satisfied by constants
        assert batch == 1 or np.ptp(fused) > 1e-3
    meta = backend.metadata
    assert meta.family == "fused" and meta.score_kind == "logit"
    assert meta.map_axes == oc.metadata.map_axes
    assert meta.calibration.threshold == 0.4
    assert meta.min_audio_s == max(oc.metadata.min_audio_s, sup.metadata.min_audio_s)
    backend.close()


def test_engine_runs_a_fused_pair(pair: Path) -> None:
    from stream_guard import scan_array

    rng = np.random.default_rng(0)
    events = scan_array(_audio(rng, 1, 4.0)[0], 16000, pair)
    kinds = {type(e).__name__ for e in events}
    assert "ScoreEvent" in kinds and "SummaryEvent" in kinds


def test_member_changed_since_fit_is_refused(pair: Path, tmp_path: Path) -> None:
    for f in pair.parent.iterdir():
        shutil.copy(f, tmp_path / f.name)
    other = build_bundle(tmp_path / "x.onnx", metadata=bundle_metadata(name="recalibrated"))
    shutil.move(other, tmp_path / "supervised.onnx")
    with pytest.raises(BundleError, match=r"supervised\.onnx.*sha256 mismatch"):
        load_backend(tmp_path / "pair.fusion.json", provider="cpu")


def test_missing_member_and_bad_files(pair: Path, tmp_path: Path) -> None:
    shutil.copy(pair, tmp_path / "pair.fusion.json")
    with pytest.raises(BundleError, match="oneclass.onnx.*not found"):
        load_backend(tmp_path / "pair.fusion.json", provider="cpu")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BundleError, match="bad.json: fusion file is not readable JSON"):
        load_backend(tmp_path / "bad.json")
    raw = json.loads(pair.read_text())
    raw["weights"] = [1.0]
    (tmp_path / "w.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="one weight per member"):
        read_fusion(tmp_path / "w.json")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(BundleError, match="not a stream-guard fusion file"):
        read_fusion(tmp_path / "other.json")
