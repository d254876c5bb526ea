"""Fake backends for engine tests. They are NOT models: they wrap the real test bundle to add delay or
failures, which a real backend cannot be made to do on demand."""

from __future__ import annotations

import threading
import time

import numpy as np

from stream_guard.backends.base import BackendError

POISON = np.float32(0.123)  # a window whose first sample is exactly this makes FailingBackend raise


class SlowBackend:
    """FAKE: the real backend plus a fixed sleep per call, to overload the scheduler deterministically."""

    def __init__(self, inner, delay_s: float) -> None:
        self.inner = inner
        self.metadata = inner.metadata
        self.delay_s = delay_s
        self.calls = 0
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()

    def infer(self, audio: np.ndarray):
        with self._lock:
            self.calls += 1
            self.batch_sizes.append(audio.shape[0])
        time.sleep(self.delay_s)
        return self.inner.infer(audio)

    def close(self) -> None:
        pass


class FailingBackend(SlowBackend):
    """FAKE: raises for any batch that contains a poisoned window (first sample == POISON)."""

    def infer(self, audio: np.ndarray):
        if np.any(audio[:, 0] == POISON):
            raise BackendError("poisoned window")
        return super().infer(audio)


class MalformedBackend(SlowBackend):
    """FAKE: answers with one score too many and a NaN score, as a broken third-party backend might."""

    def infer(self, audio: np.ndarray):
        score, amap = self.inner.infer(audio)
        if audio.shape[0] == 1:
            return np.array([np.nan], np.float32), amap
        return np.concatenate([score, score[:1]]), amap
