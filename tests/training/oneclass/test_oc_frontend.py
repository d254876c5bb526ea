"""The in-graph front end: exact filterbank and spectrum, level and silence invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.oneclass.frontend import FrontEndConfig, LogMelFrontEnd, htk_mel_filterbank


def test_htk_filterbank_matches_librosa() -> None:
    librosa = pytest.importorskip("librosa")
    ours = htk_mel_filterbank(257, 20.0, 8000.0, 80, 16000).numpy().T
    ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=80, fmin=20.0, fmax=8000.0, htk=True, norm=None)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert (ours.sum(axis=1) > 0).all(), "every mel band must cover at least one DFT bin"


def test_conv_dft_power_equals_numpy_rfft(speech: np.ndarray) -> None:
    fe = LogMelFrontEnd()
    c = fe.cfg
    x = torch.from_numpy(speech[None, :16000])
    xc = x - x.mean()
    spec = torch.nn.functional.conv1d(xc.unsqueeze(1), fe.dft, stride=c.hop_length)[0].numpy()
    power = spec[: fe.n_bins] ** 2 + spec[fe.n_bins :] ** 2
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(c.win_length) / c.win_length)
    frame = xc[0, 5 * c.hop_length : 5 * c.hop_length + c.win_length].numpy() * window
    ref = np.abs(np.fft.rfft(frame, n=c.n_fft)) ** 2 / np.sum(window**2)
    np.testing.assert_allclose(power[:, 5], ref, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("samples", [400, 8000, 12345, 32000])
def test_frame_count(samples: int) -> None:
    fe = LogMelFrontEnd()
    img = fe(torch.zeros(2, samples))
    assert img.shape == (2, 3, 80, fe.cfg.frames(samples))


def test_level_invariance(speech: np.ndarray) -> None:
    """12 dB quieter (or 6 dB louder) speech gives the same image: level is not evidence."""
    fe = LogMelFrontEnd()
    x = torch.from_numpy(speech[None, :])
    base = fe(x)
    for gain_db in (-12.0, 6.0):
        other = fe(x * 10 ** (gain_db / 20))
        assert torch.max(torch.abs(other - base)) < 1e-3


def test_digital_zeros_and_dither_look_alike(speech: np.ndarray) -> None:
    """Padding with exact zeros or with 16-bit dither lands on the same floor of the image."""
    fe = LogMelFrontEnd()
    rng = np.random.default_rng(0)
    pad = 16000
    zeros = np.concatenate([speech, np.zeros(pad, np.float32)])
    dither = np.concatenate([speech, (rng.standard_normal(pad) * 1.5 / 32768).astype(np.float32)])
    a = fe(torch.from_numpy(zeros[None]))[0, 0]
    b = fe(torch.from_numpy(dither[None]))[0, 0]
    tail = slice(fe.cfg.frames(len(speech)) + 2, None)
    # within 0.05 image units = 1.25 dB, where the speech/floor range spans about 3 units
    assert torch.max(torch.abs(a[:, tail] - b[:, tail])) < 0.05
    assert torch.max(torch.abs(a[:, :100] - b[:, :100])) < 0.05


def test_silence_is_finite_and_not_amplified() -> None:
    fe = LogMelFrontEnd()
    zeros = fe(torch.zeros(1, 16000))
    faint = fe(torch.randn(1, 16000) * 1e-5)
    assert torch.isfinite(zeros).all()
    floor = (10 * np.log10(fe.cfg.log_floor) + fe.cfg.db_offset) / fe.cfg.db_scale
    assert torch.allclose(zeros, torch.full_like(zeros, floor))
    # a -100 dBFS noise window stays near the floor instead of being normalised up to speech level
    assert float(faint.mean()) < floor + 0.3


def test_config_geometry() -> None:
    c = FrontEndConfig()
    assert c.frame_step_s == pytest.approx(0.01)
    assert c.frames(32000) == 198
