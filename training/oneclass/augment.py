"""On-the-fly augmentation of bona fide crops: what the one-class model must learn to call "real".

When the project's augmentation package (:mod:`training.augment`) is present its chain is used,
configured by the run's ``augment.params``. Otherwise a small built-in chain runs, made only of cheap
numpy/soxr operations so it keeps up with training on two cores: telephone channel (mu-law or A-law 8 kHz
round trip, which also band-limits to ~3.4 kHz), plain band-limits, level changes, light noise at a random SNR
and synthetic room reverberation. Each crop draws its own choices from the crop's RNG, so runs are
reproducible and resumable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.audio_io import g711_roundtrip, resample

Augmenter = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass
class BuiltinParams:
    p_telephone: float = 0.4  # G.711 8 kHz round trip (mu-law or A-law)
    p_bandlimit: float = 0.15  # resample through 8/11.025/12 kHz
    p_noise: float = 0.3
    snr_db: tuple[float, float] = (15.0, 40.0)
    p_reverb: float = 0.2
    rt60_s: tuple[float, float] = (0.15, 0.6)
    gain_db: tuple[float, float] = (-12.0, 6.0)


def _reverb(x: np.ndarray, sr: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a decaying noise impulse response (a diffuse room tail) plus the dry path."""
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[0] = 0.0
    ir *= 0.5 / (np.sqrt(np.sum(ir**2)) + 1e-9)
    ir[0] = 1.0
    size = 1 << int(np.ceil(np.log2(len(x) + n)))
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)[: len(x)]
    return y.astype(np.float32)


def builtin(params: dict[str, Any], sr: int) -> Augmenter:
    """The built-in chain; ``params`` overrides :class:`BuiltinParams` fields."""
    p = BuiltinParams(**params)

    def apply(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(x)
        if rng.random() < p.p_reverb:
            x = _reverb(x, sr, float(rng.uniform(*p.rt60_s)), rng)
        if rng.random() < p.p_noise:
            sig = float(np.sqrt(np.mean(x**2)) + 1e-9)
            snr = float(rng.uniform(*p.snr_db))
            x = x + rng.standard_normal(n).astype(np.float32) * sig * 10 ** (-snr / 20)
        r = rng.random()
        if r < p.p_telephone:
            x = g711_roundtrip(x, sr, "mulaw" if rng.random() < 0.7 else "alaw")
        elif r < p.p_telephone + p.p_bandlimit:
            mid = int(rng.choice([8000, 11025, 12000]))
            x = resample(resample(x, sr, mid), mid, sr)
        x = x * np.float32(10 ** (rng.uniform(*p.gain_db) / 20))
        peak = float(np.max(np.abs(x)) + 1e-9)
        if peak > 1.0:
            x = x / peak
        out = np.zeros(n, dtype=np.float32)
        m = min(n, len(x))
        out[:m] = x[:m]
        return out

    return apply


def build(cfg: Any, sr: int, seed: int = 0) -> Augmenter | None:
    """The augmenter for a run's ``augment`` config section (None when disabled).

    With :mod:`training.augment` present, ``params`` is its chain config (``{"augmentations": [...]}``); empty
    params mean its recommended ``default_config``. ``params: {builtin: {...}}`` forces the built-in chain.
    """
    if not cfg.enabled:
        return None
    params = dict(cfg.params or {})
    if "builtin" in params:
        return builtin(params["builtin"] or {}, sr)
    try:
        from training.augment import Chain, default_config
    except ImportError:
        return builtin(params, sr)
    chain = Chain.from_config(params if params.get("augmentations") else default_config(seed))

    def apply(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return chain(x, sr, rng=rng)

    return apply
