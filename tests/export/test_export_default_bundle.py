"""The embedded default bundle honours the bundle contract (onnxruntime only, no torch)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_guard.bundle import default_bundle_path, read_metadata


@pytest.fixture(scope="module")
def session():
    import onnxruntime as ort

    return ort.InferenceSession(str(default_bundle_path()), providers=["CPUExecutionProvider"])


def test_metadata_is_valid_and_complete() -> None:
    meta = read_metadata(default_bundle_path())
    assert meta.family == "stfpm" and meta.sample_rate == 16000
    assert meta.window_s == 2.0 and meta.min_audio_s == 0.5 and meta.hop_s > 0
    assert meta.map_axes.kind == "time_frequency" and len(meta.map_axes.freq_hz) == 20
    assert meta.calibration.fitted_on and meta.licence
    ds = meta.extra["discrepancy_scaling"]
    assert ds["eps"] == 0.05 and len(ds["mu_initializers"]) == 3 and len(ds["discrepancy_tensors"]) == 3
    assert default_bundle_path().stat().st_size < 20e6


@pytest.mark.parametrize("batch,seconds", [(1, 0.5), (4, 2.0), (2, 1.3)])
def test_any_batch_and_length_from_half_a_second(session, batch: int, seconds: float) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((batch, int(seconds * 16000))) * 0.05).astype(np.float32)
    score, amap = session.run(["score", "anomaly_map"], {"audio": x})
    frames = 1 + (x.shape[1] - 400) // 160
    assert score.shape == (batch,) and np.isfinite(score).all()
    assert amap.shape == (batch, 20, math.ceil(math.ceil(frames / 2) / 2))


def test_windows_are_independent(session) -> None:
    """The model is a pure function of a window: batching does not change a window's score."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 32000)) * 0.05).astype(np.float32)
    together = session.run(["score"], {"audio": x})[0]
    alone = np.array([session.run(["score"], {"audio": x[i : i + 1]})[0][0] for i in range(3)])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)


def _voiced(seconds: float, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a slow pitch glide, syllable-rate envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 30))
    x = x * (0.4 + 0.6 * (0.5 - 0.5 * np.cos(2 * np.pi * 4 * t))) + 0.01 * rng.standard_normal(len(t))
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def test_level_does_not_change_the_score(session) -> None:
    """A window 12 dB quieter scores the same: level is normalised inside the graph."""
    x = _voiced(2.0)[None, :]
    loud = session.run(["score"], {"audio": x})[0]
    quiet = session.run(["score"], {"audio": x * np.float32(10 ** (-12 / 20))})[0]
    np.testing.assert_allclose(loud, quiet, rtol=1e-3, atol=1e-3)
