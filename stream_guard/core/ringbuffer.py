"""A fixed-capacity ring buffer of mono float32 samples addressed by absolute stream position.

Windows overlap (2 s windows every 0.5 s), so the stream keeps the last ``capacity`` samples and cuts windows
by absolute sample index. Memory per stream is constant however long the stream runs.
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """Holds the most recent ``capacity`` samples; ``total`` counts every sample ever written."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, np.float32)
        self.total = 0

    @property
    def oldest(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self.total - self.capacity)

    def write(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        n = len(x)
        if n == 0:
            return
        if n >= self.capacity:
            x = x[-self.capacity :]
            self.total += n - self.capacity
            n = self.capacity
        pos = self.total % self.capacity
        first = min(n, self.capacity - pos)
        self._buf[pos : pos + first] = x[:first]
        if first < n:
            self._buf[: n - first] = x[first:]
        self.total += n

    def read(self, start: int, end: int) -> np.ndarray:
        """A copy of samples ``[start, end)`` (absolute indices); they must still be held."""
        if start < self.oldest or end > self.total or start > end:
            raise IndexError(f"samples [{start}, {end}) not held (have [{self.oldest}, {self.total}))")
        n = end - start
        pos = start % self.capacity
        first = min(n, self.capacity - pos)
        out = np.empty(n, np.float32)
        out[:first] = self._buf[pos : pos + first]
        if first < n:
            out[first:] = self._buf[: n - first]
        return out
