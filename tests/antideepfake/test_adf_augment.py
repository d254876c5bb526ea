"""RawBoost (Tak et al. 2022) and channel round trips."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from training.antideepfake.augment import (
    ChannelConfig,
    RawBoostConfig,
    channel,
    g722,
    isd_additive,
    lnl_convolutive,
    mulaw_8k,
    notch_filter_bank,
    rawboost,
    ssi_additive,
)

from .conftest import speechlike


@pytest.fixture
def voice() -> np.ndarray:
    return speechlike(1.5, np.random.default_rng(0))


@pytest.mark.parametrize("algo", range(0, 9))
def test_every_combination_keeps_length_and_is_reproducible(algo: int, voice: np.ndarray) -> None:
    cfg = RawBoostConfig(algo=algo)
    a = rawboost(voice, cfg, np.random.default_rng(7))
    b = rawboost(voice, cfg, np.random.default_rng(7))
    assert a.shape == voice.shape and a.dtype == np.float32
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    if algo == 0:
        np.testing.assert_array_equal(a, voice)
    else:
        assert not np.allclose(a, voice)


def test_isd_touches_at_most_p_percent(voice: np.ndarray) -> None:
    cfg = RawBoostConfig(p_percent=10.0)
    for seed in range(5):
        out = isd_additive(voice, cfg, np.random.default_rng(seed))
        changed = np.mean(~np.isclose(out, voice, atol=0, rtol=0))
        assert changed <= 0.10 + 1e-9


def test_ssi_noise_respects_snr_range(voice: np.ndarray) -> None:
    cfg = RawBoostConfig(snr_min=15.0, snr_max=25.0)
    for seed in range(5):
        out = ssi_additive(voice, cfg, np.random.default_rng(seed))
        noise = out - voice
        snr = 20 * np.log10(np.linalg.norm(voice) / np.linalg.norm(noise))
        assert 15.0 - 1e-3 <= snr <= 25.0 + 1e-3


def test_notch_bank_has_unit_peak_gain_and_notches() -> None:
    from scipy import signal

    cfg = RawBoostConfig(
        n_bands=1, min_f=2000, max_f=2000, min_bw=400, max_bw=400, min_coeff=81, max_coeff=81
    )
    taps = notch_filter_bank(cfg, np.random.default_rng(0), (0.0, 0.0))
    freqs, resp = signal.freqz(taps, 1, worN=4096, fs=16_000)
    mag = np.abs(resp)
    assert mag.max() == pytest.approx(1.0, rel=1e-3)
    assert mag[np.argmin(np.abs(freqs - 2000))] < 0.25  # the band around 2 kHz is suppressed (> 12 dB)
    assert mag[np.argmin(np.abs(freqs - 500))] > 0.8


def test_lnl_output_is_zero_mean_and_peak_normalised(voice: np.ndarray) -> None:
    out = lnl_convolutive(voice, RawBoostConfig(), np.random.default_rng(3))
    assert abs(float(out.mean())) < 1e-3
    assert float(np.max(np.abs(out))) == pytest.approx(1.0, rel=1e-5)


def test_bad_algo_is_rejected() -> None:
    with pytest.raises(ValueError, match="algo"):
        RawBoostConfig(algo=9)


def test_mulaw_channel_is_narrowband(voice: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    wide = (voice + 0.05 * rng.standard_normal(len(voice))).astype(np.float32)
    out = mulaw_8k(wide)
    assert out.shape == wide.shape
    spec_in = np.abs(np.fft.rfft(wide)) ** 2
    spec_out = np.abs(np.fft.rfft(out)) ** 2
    freqs = np.fft.rfftfreq(len(wide), 1 / 16_000)
    high = freqs > 4500
    assert spec_out[high].sum() < 0.01 * spec_in[high].sum()
    low = (freqs > 200) & (freqs < 3000)
    assert spec_out[low].sum() == pytest.approx(spec_in[low].sum(), rel=0.1)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_g722_round_trip(voice: np.ndarray) -> None:
    out = g722(voice)
    assert out.shape == voice.shape
    assert np.corrcoef(out[200:], voice[200:])[0, 1] > 0.5 or np.abs(out).max() > 0.01


def test_channel_choice_follows_probabilities(voice: np.ndarray) -> None:
    assert channel(voice, ChannelConfig(), np.random.default_rng(0)) is not None
    np.testing.assert_array_equal(channel(voice, ChannelConfig(), np.random.default_rng(0)), voice)
    out = channel(voice, ChannelConfig(mulaw_prob=1.0), np.random.default_rng(0))
    np.testing.assert_allclose(out, mulaw_8k(voice))
    with pytest.raises(ValueError):
        ChannelConfig(mulaw_prob=0.7, g722_prob=0.7)
