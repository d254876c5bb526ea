"""Quality checks that let a window abstain instead of guessing.

A detector trained on speech says nothing useful about silence, hold music at -60 dBFS or a clipped, distorted
signal, and call-center integrations want to know *why* no verdict was given. These checks are deliberately
simple, deterministic and cheap (a few vector operations per window): an energy gate, not a VAD model.

- ``no_speech``: fewer than ``min_active_fraction`` of 20 ms frames are louder than ``silence_dbfs``.
- ``clipped``: more than ``max_clipped_fraction`` of samples sit at full scale (|x| >= ``clip_level``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QualityConfig:
    silence_dbfs: float = -50.0
    min_active_fraction: float = 0.1
    clip_level: float = 0.99
    max_clipped_fraction: float = 0.01
    frame_s: float = 0.02


def active_fraction(x: np.ndarray, sample_rate: int, cfg: QualityConfig) -> float:
    """Fraction of ``frame_s`` frames whose RMS level exceeds ``silence_dbfs``."""
    frame = max(1, int(round(cfg.frame_s * sample_rate)))
    n = len(x) // frame
    if n == 0:
        frames = x[None, :] if len(x) else np.zeros((1, 1), np.float32)
    else:
        frames = x[: n * frame].reshape(n, frame)
    # energy per frame as a row-wise dot product: one pass, no temporaries (this runs for every window)
    energy = np.einsum("ij,ij->i", frames, frames)
    threshold = 10.0 ** (cfg.silence_dbfs / 10.0) * frames.shape[1]
    return float(np.count_nonzero(energy > threshold)) / len(energy)


def check_window(x: np.ndarray, sample_rate: int, cfg: QualityConfig = QualityConfig()) -> list[str]:
    """Abstain reasons for one window of mono samples (empty list = fine to judge)."""
    reasons: list[str] = []
    if active_fraction(x, sample_rate, cfg) < cfg.min_active_fraction:
        reasons.append("no_speech")
    if len(x) and np.count_nonzero(np.abs(x) >= cfg.clip_level) > cfg.max_clipped_fraction * len(x):
        reasons.append("clipped")
    return reasons
