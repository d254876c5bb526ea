"""Waveform augmentation for fine-tuning: RawBoost and telephone / wideband channel round trips.

RawBoost (Tak, Kamble, Patino, Todisco, Evans, "RawBoost: a raw data boosting and augmentation method applied
to automatic speaker verification anti-spoofing", ICASSP 2022) models three nuisance sources of a real
channel, each generated afresh per utterance:

1. **Linear and non-linear convolutive noise (LnL)**: a sum of ``N_f`` filtered powers of the signal,
   ``y = sum_j g_j(x ** j)``, where each ``g_j`` is a cascade of ``n_bands`` random notch (band-stop) FIR
   filters (random centre frequency, bandwidth and odd length, Hamming window), normalised to unit peak gain
   and scaled by a random gain; higher powers get lower gain ranges (``bias``), which is what makes the
   non-linear terms small. Models a channel's frequency response and non-linear distortion.
2. **Impulsive signal-dependent additive noise (ISD)**: ``P`` % of the samples at random positions get
   ``x[i] += g_sd * x[i] * (2u1 - 1)(2u2 - 1)``: clicks whose size follows the signal (quantisation errors,
   overloaded amplifiers).
3. **Stationary signal-independent additive noise (SSI)**: white noise through the same random notch filter
   bank, added at a random SNR between ``snr_min`` and ``snr_max`` dB (background and electronic noise).

The paper's combinations are selectable as ``algo`` (numbering of the reference implementation, also used by
AntiDeepfake's ``algo: 5``): 1 LnL, 2 ISD, 3 SSI, 4 LnL->ISD->SSI in series, 5 LnL->ISD, 6 LnL->SSI, 7
ISD->SSI, 8 LnL and ISD in parallel (averaged). Default parameters are the paper's.

All functions take a float32 mono waveform and a :class:`numpy.random.Generator`, so augmentation is
reproducible from a seed, and return float32 of the same length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from training.antideepfake.architectures import SAMPLE_RATE
from training.audio_io import CodecError, g711_roundtrip, g722_roundtrip


@dataclass(frozen=True)
class RawBoostConfig:
    """RawBoost parameters (Tak et al. 2022, Table 1 / reference implementation defaults)."""

    algo: int = 5
    # filter bank shared by LnL and SSI
    n_bands: int = 5
    min_f: float = 20.0
    max_f: float = 8000.0
    min_bw: float = 100.0
    max_bw: float = 1000.0
    min_coeff: int = 10
    max_coeff: int = 100
    min_g: float = 0.0
    max_g: float = 0.0
    # LnL
    n_f: int = 5
    min_bias: float = 5.0
    max_bias: float = 20.0
    # ISD
    p_percent: float = 10.0
    g_sd: float = 2.0
    # SSI
    snr_min: float = 10.0
    snr_max: float = 40.0

    def __post_init__(self) -> None:
        if self.algo not in range(0, 9):
            raise ValueError(f"RawBoost algo must be 0 (off) or 1..8, got {self.algo}")


def _peak_normalise(x: np.ndarray, always: bool) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0 and (always or peak > 1.0):
        return x / peak
    return x


def notch_filter_bank(
    cfg: RawBoostConfig, rng: np.random.Generator, gain_db: tuple[float, float]
) -> np.ndarray:
    """FIR taps of ``n_bands`` cascaded random band-stop filters, unit peak gain times a random gain."""
    nyquist = SAMPLE_RATE / 2
    taps = np.ones(1)
    for _ in range(cfg.n_bands):
        fc = rng.uniform(cfg.min_f, cfg.max_f)
        bw = rng.uniform(cfg.min_bw, cfg.max_bw)
        n = int(rng.integers(cfg.min_coeff, cfg.max_coeff + 1))
        n += 1 - n % 2  # band-stop FIR filters need an odd length
        f1 = max(fc - bw / 2, 1e-3)
        f2 = min(fc + bw / 2, nyquist - 1e-3)
        if f2 <= f1:
            continue
        taps = np.convolve(taps, signal.firwin(n, [f1, f2], window="hamming", fs=SAMPLE_RATE))
    gain = rng.uniform(*gain_db) if gain_db[1] > gain_db[0] else gain_db[0]
    _, response = signal.freqz(taps, 1, worN=512, fs=SAMPLE_RATE)
    peak = float(np.max(np.abs(response)))
    return taps * (10 ** (gain / 20)) / max(peak, 1e-12)


def lnl_convolutive(x: np.ndarray, cfg: RawBoostConfig, rng: np.random.Generator) -> np.ndarray:
    """Linear and non-linear convolutive noise: sum of notch-filtered powers of ``x``, peak-normalised."""
    y = np.zeros_like(x, dtype=np.float64)
    min_g = cfg.min_g - cfg.min_bias
    max_g = cfg.max_g - cfg.max_bias
    for j in range(cfg.n_f):
        if j == 1:  # every power beyond the linear term gets a lower gain range
            min_g -= cfg.min_bias
            max_g -= cfg.max_bias
        lo, hi = sorted((min_g, max_g))
        taps = notch_filter_bank(cfg, rng, (lo, hi))
        y += signal.lfilter(taps, 1.0, x.astype(np.float64) ** (j + 1))
    y -= y.mean()
    return _peak_normalise(y, always=True).astype(np.float32)


def isd_additive(x: np.ndarray, cfg: RawBoostConfig, rng: np.random.Generator) -> np.ndarray:
    """Impulsive signal-dependent noise on a random ``P`` % of the samples."""
    y = x.astype(np.float64).copy()
    beta = rng.uniform(0, cfg.p_percent)
    n = int(len(x) * beta / 100)
    if n > 0:
        pos = rng.permutation(len(x))[:n]
        f_r = (2 * rng.random(n) - 1) * (2 * rng.random(n) - 1)
        y[pos] = x[pos] + cfg.g_sd * x[pos] * f_r
    return _peak_normalise(y, always=False).astype(np.float32)


def ssi_additive(x: np.ndarray, cfg: RawBoostConfig, rng: np.random.Generator) -> np.ndarray:
    """Coloured stationary noise at a random SNR in [snr_min, snr_max] dB."""
    noise = rng.standard_normal(len(x))
    taps = notch_filter_bank(cfg, rng, (cfg.min_g, cfg.max_g))
    noise = _peak_normalise(signal.lfilter(taps, 1.0, noise), always=True)
    snr = rng.uniform(cfg.snr_min, cfg.snr_max)
    noise_norm = float(np.linalg.norm(noise))
    if noise_norm == 0.0:
        return x.astype(np.float32)
    noise = noise / noise_norm * float(np.linalg.norm(x)) / 10.0 ** (0.05 * snr)
    return (x + noise).astype(np.float32)


def rawboost(x: np.ndarray, cfg: RawBoostConfig, rng: np.random.Generator) -> np.ndarray:
    """Apply RawBoost combination ``cfg.algo`` (0 = identity) to one utterance."""
    x = np.asarray(x, dtype=np.float32)
    a = cfg.algo
    if a == 0 or x.size == 0:
        return x
    if a == 1:
        return lnl_convolutive(x, cfg, rng)
    if a == 2:
        return isd_additive(x, cfg, rng)
    if a == 3:
        return ssi_additive(x, cfg, rng)
    if a == 4:
        return ssi_additive(isd_additive(lnl_convolutive(x, cfg, rng), cfg, rng), cfg, rng)
    if a == 5:
        return isd_additive(lnl_convolutive(x, cfg, rng), cfg, rng)
    if a == 6:
        return ssi_additive(lnl_convolutive(x, cfg, rng), cfg, rng)
    if a == 7:
        return ssi_additive(isd_additive(x, cfg, rng), cfg, rng)
    # a == 8: parallel LnL and ISD, averaged
    y = (lnl_convolutive(x, cfg, rng) + isd_additive(x, cfg, rng)) / 2
    return _peak_normalise(y, always=False).astype(np.float32)


# ------------------------------------------------------------------------------------------ channel
# simulation


def mulaw_8k(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Telephone channel: 8 kHz G.711 mu-law round trip, back at ``sample_rate`` with the same length."""
    return g711_roundtrip(np.asarray(x, dtype=np.float32), sample_rate, "mulaw")


def g722(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Wideband VoIP channel: G.722 64 kbit/s round trip, in-process through PyAV, else with the ffmpeg
    command (``CodecError`` without either)."""
    return g722_roundtrip(np.asarray(x, dtype=np.float32), sample_rate)


@dataclass(frozen=True)
class ChannelConfig:
    """Probability of each channel round trip per training utterance (at most one is applied).

    Asking for G.722 on a machine where neither PyAV nor the ffmpeg command can run it is a
    :class:`~training.audio_io.CodecError` here, when the run is configured, not on the first utterance that
    draws it.
    """

    mulaw_prob: float = 0.0
    g722_prob: float = 0.0

    def __post_init__(self) -> None:
        if min(self.mulaw_prob, self.g722_prob) < 0 or self.mulaw_prob + self.g722_prob > 1:
            raise ValueError("channel probabilities must be >= 0 and sum to at most 1")
        if self.g722_prob > 0:
            from training.augment.codecs import codec_status

            backend, why = codec_status()["g722"]
            if backend is None:
                raise CodecError(f"--g722-prob {self.g722_prob}: no G.722 codec on this machine ({why})")


def channel(x: np.ndarray, cfg: ChannelConfig, rng: np.random.Generator) -> np.ndarray:
    """Pass ``x`` through one randomly chosen channel (or none) per :class:`ChannelConfig`."""
    u = rng.random()
    if u < cfg.mulaw_prob:
        return mulaw_8k(x)
    if u < cfg.mulaw_prob + cfg.g722_prob:
        return g722(x)
    return np.asarray(x, dtype=np.float32)
