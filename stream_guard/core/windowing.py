"""Where windows fall on a stream: a pure function of sample counts, so it is identical for any chunking.

Full windows of ``window`` samples start every ``hop`` samples (``[k*hop, k*hop + window)``). To give a first
score quickly, before the first full window is available the stream scores growing windows that start at 0 and
end at ``min_samples`` and then at every multiple of ``hop`` below ``window``; they are flagged
low-confidence. Nothing is ever padded: a model sees only real audio. At the end of a stream, audio after the
last window's end is covered by one tail window that ends at the last sample (full length if the stream is
long enough).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class WindowSpan:
    """``[start, end)`` in samples at the model rate; ``low_confidence`` for windows shorter than the full
    window."""

    start: int
    end: int
    low_confidence: bool


class WindowPlanner:
    """Tells, as samples arrive, which windows have become complete."""

    def __init__(self, window: int, hop: int, min_samples: int, warmup: bool = True) -> None:
        if window <= 0 or hop <= 0 or min_samples <= 0:
            raise ValueError("window, hop and min_samples must be positive")
        self.window = int(window)
        self.hop = int(hop)
        self.min_samples = min(int(min_samples), self.window)
        self.warmup = warmup
        self._growing_ends = self._plan_growing() if warmup else []
        self._next_growing = 0
        self._next_full = 0  # index k of the next full window
        self.last_end = 0  # end of the last window handed out

    def _plan_growing(self) -> list[int]:
        ends = [self.min_samples] if self.min_samples < self.window else []
        k = self.min_samples // self.hop + 1
        while k * self.hop < self.window:
            ends.append(k * self.hop)
            k += 1
        return ends

    def advance(self, available: int) -> Iterator[WindowSpan]:
        """Windows that end at or before ``available`` and were not yet handed out, in order."""
        while (
            self._next_growing < len(self._growing_ends)
            and self._growing_ends[self._next_growing] <= available
        ):
            end = self._growing_ends[self._next_growing]
            self._next_growing += 1
            self.last_end = end
            yield WindowSpan(0, end, True)
        while self._next_full * self.hop + self.window <= available:
            start = self._next_full * self.hop
            self._next_full += 1
            self._next_growing = len(self._growing_ends)
            self.last_end = start + self.window
            yield WindowSpan(start, start + self.window, False)

    def next_end(self) -> int:
        """End (in samples) of the next window to be handed out, ignoring the end-of-stream tail."""
        if self._next_growing < len(self._growing_ends):
            return self._growing_ends[self._next_growing]
        return self._next_full * self.hop + self.window

    def finish(self, total: int) -> list[WindowSpan]:
        """The tail window covering audio after the last window, if any (none if the stream is too short)."""
        if total <= self.last_end or total < self.min_samples:
            return []
        start = max(0, total - self.window)
        self.last_end = total
        return [WindowSpan(start, total, total - start < self.window)]

    def next_start_lower_bound(self) -> int:
        """No window handed out later starts before this sample (used to finalise map columns)."""
        if self._next_growing < len(self._growing_ends) or self._next_full == 0:
            return 0
        # the next regular window starts at _next_full * hop; the tail starts after the last full window's
        # start
        return (self._next_full - 1) * self.hop + 1
