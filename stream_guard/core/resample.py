"""Streaming sample-rate conversion to the bundle's rate.

soxr's streaming mode keeps the filter state between chunks and compensates its own delay, so the concatenated
output of any chunking equals the one-shot :func:`soxr.resample` output (tests check it). When the input
already has the model's rate the resampler is a pass-through and costs nothing.
"""

from __future__ import annotations

import numpy as np


class StreamResampler:
    """Resample ``[frames, channels]`` float32 chunks from ``in_rate`` to ``out_rate``; call :meth:`flush` at
    the end."""

    def __init__(self, in_rate: int, out_rate: int, channels: int, quality: str = "HQ") -> None:
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self.channels = int(channels)
        self._stream = None
        if self.in_rate != self.out_rate:
            import soxr

            self._stream = soxr.ResampleStream(
                self.in_rate, self.out_rate, self.channels, dtype="float32", quality=quality
            )
        self._flushed = False

    @property
    def passthrough(self) -> bool:
        return self._stream is None

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Resample one chunk; the output may lag the input by the filter delay until :meth:`flush`."""
        if self._flushed:
            raise RuntimeError("resampler already flushed")
        if self._stream is None or len(chunk) == 0:
            return np.ascontiguousarray(chunk, dtype=np.float32)
        return self._stream.resample_chunk(np.ascontiguousarray(chunk, dtype=np.float32), last=False)

    def flush(self) -> np.ndarray:
        """The samples still held in the filter; afterwards the resampler accepts nothing more."""
        if self._flushed:
            return np.zeros((0, self.channels), np.float32)
        self._flushed = True
        if self._stream is None:
            return np.zeros((0, self.channels), np.float32)
        return self._stream.resample_chunk(np.zeros((0, self.channels), np.float32), last=True)
