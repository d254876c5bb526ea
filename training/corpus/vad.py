"""Speech-content check for source clips, with the silero-vad ONNX model that ships inside its PyPI wheel
(MIT).

Game and codec packages mix speech with effects, music and test tones; the packaged file names do not always
tell them apart. A clip is kept as bona fide speech only when enough of it is voice activity. The model runs
with onnxruntime (no torch); if the wheel is missing, :func:`load_vad` returns ``None`` and the builder falls
back to energy trimming alone (and says so).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from training.audio_io import resample

_CHUNK = 512
_CONTEXT = 64


class SileroVAD:
    """Frame-wise speech probability (32 ms frames at 16 kHz)."""

    def __init__(self, model_path: Path) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )

    def probabilities(self, x: np.ndarray, sample_rate: int) -> np.ndarray:
        """Speech probability per 512-sample frame of ``x`` resampled to 16 kHz."""
        x16 = resample(np.asarray(x, dtype=np.float32), sample_rate, 16000)
        n = x16.shape[0] // _CHUNK
        state = np.zeros((2, 1, 128), dtype=np.float32)
        context = np.zeros((1, _CONTEXT), dtype=np.float32)
        sr = np.array(16000, dtype=np.int64)
        out = np.empty(n, dtype=np.float32)
        for i in range(n):
            chunk = x16[None, i * _CHUNK : (i + 1) * _CHUNK]
            inp = np.concatenate([context, chunk], axis=1)
            prob, state = self._session.run(None, {"input": inp, "state": state, "sr": sr})
            out[i] = float(prob.reshape(-1)[0])
            context = inp[:, -_CONTEXT:]
        return out

    def speech_fraction(self, x: np.ndarray, sample_rate: int, threshold: float = 0.5) -> float:
        """Fraction of frames with speech probability >= ``threshold`` (0.0 for clips under one frame)."""
        p = self.probabilities(x, sample_rate)
        return float(np.mean(p >= threshold)) if p.size else 0.0


def silero_model_path() -> Path | None:
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "silero_vad.onnx"
    return path if path.is_file() else None


def load_vad() -> SileroVAD | None:
    path = silero_model_path()
    return SileroVAD(path) if path is not None else None
