"""The AntiDeepfake training tools' view of :mod:`training.audio_io`: files read as mono float32 at 16 kHz.

Reading, resampling and the codec round trips live in :mod:`training.audio_io` only; this module fixes the
sample rate the detector runs at for the fine-tuning, evaluation and command-line modules.
"""

from __future__ import annotations

import os

import numpy as np

from training.antideepfake.architectures import SAMPLE_RATE
from training.audio_io import AudioReadError, CodecError, read_audio

__all__ = ["AudioReadError", "CodecError", "load_audio"]


def load_audio(path: str | os.PathLike[str]) -> np.ndarray:
    """Mono float32 at 16 kHz (channels averaged); :class:`AudioReadError` naming the file for bad input."""
    return read_audio(path, sample_rate=SAMPLE_RATE)[0]
