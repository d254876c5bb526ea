"""Incremental stitching of overlapping window maps into one rolling time x frequency map.

Each window's ``anomaly_map`` ``[F, T]`` has columns of ``frame_step_s`` starting at the window's start.
Window starts need not fall on the frame grid (a 0.5 s hop is 12.5 frames of 40 ms), so every window column is
spread over the two global columns it overlaps, weighted by the overlap length, and each global column is the
weighted average of everything that covers it. A column is emitted once, when no later window can touch it:
windows start in non-decreasing order, so everything left of the next window's start is final. Memory is
bounded by one window plus one hop of columns.
"""

from __future__ import annotations

import math

import numpy as np


class MapStitcher:
    """Accumulates window maps; :meth:`finalize` and :meth:`flush` return the columns that became final."""

    def __init__(self, frame_step_s: float, sample_rate: int) -> None:
        if frame_step_s <= 0:
            raise ValueError("frame_step_s must be positive")
        self.frame_step_s = float(frame_step_s)
        self.frame_samples = float(frame_step_s) * int(sample_rate)
        self.rows: int | None = None
        self.origin = 0  # global index of the first column not yet emitted
        # columns [origin, origin + _used) are accumulating; the arrays keep spare capacity beyond _used (all
        # zeros) so that adding a window does not reallocate: a stream adds one map per hop for hours
        self._used = 0
        self._acc = np.zeros((0, 0), np.float64)
        self._wgt = np.zeros(0, np.float64)

    def _frames(self, sample: int) -> float:
        return round(sample / self.frame_samples, 9)

    def _ensure(self, end_col: int) -> None:
        need = end_col - self.origin
        if need <= self._used:
            return
        cap = self._wgt.shape[0]
        if need > cap:
            cap = max(need, 2 * cap, 64)
            acc = np.zeros((self._acc.shape[0], cap), np.float64)
            wgt = np.zeros(cap, np.float64)
            acc[:, : self._used] = self._acc[:, : self._used]
            wgt[: self._used] = self._wgt[: self._used]
            self._acc, self._wgt = acc, wgt
        self._used = need

    def add(self, start_sample: int, amap: np.ndarray) -> None:
        """Add one window's map ``[F, T]`` (or a time track ``[T]``) whose first column starts at
        ``start_sample``."""
        m = np.asarray(amap, dtype=np.float64)
        if m.ndim == 1:
            m = m[None, :]
        if m.ndim != 2:
            raise ValueError(f"a window map must be [F, T] or [T], got shape {m.shape}")
        if self.rows is None:
            self.rows = m.shape[0]
            self._acc = np.zeros((self.rows, self._wgt.shape[0]), np.float64)
        elif m.shape[0] != self.rows:
            raise ValueError(f"map has {m.shape[0]} rows, earlier windows had {self.rows}")
        t = m.shape[1]
        if t == 0:
            return
        offset = self._frames(start_sample)
        base = math.floor(offset)
        frac = offset - base
        if base < self.origin:
            raise ValueError("a window starts before columns that were already emitted")
        self._ensure(base + t + 1)
        lo = base - self.origin
        self._acc[:, lo : lo + t] += (1.0 - frac) * m
        self._wgt[lo : lo + t] += 1.0 - frac
        if frac > 0:
            self._acc[:, lo + 1 : lo + t + 1] += frac * m
            self._wgt[lo + 1 : lo + t + 1] += frac

    def _emit(self, end_col: int) -> tuple[int, np.ndarray] | None:
        n = min(end_col, self.origin + self._used) - self.origin
        if n <= 0 or self.rows is None:
            return None
        w = self._wgt[:n]
        with np.errstate(invalid="ignore", divide="ignore"):
            cols = np.where(w > 0, self._acc[:, :n] / np.where(w > 0, w, 1.0), np.nan).astype(np.float32)
        start = self.origin
        # move the columns still accumulating to the front (at most a window's worth) and clear the rest
        rest = self._used - n
        self._acc[:, :rest] = self._acc[:, n : self._used]
        self._wgt[:rest] = self._wgt[n : self._used]
        self._acc[:, rest : self._used] = 0.0
        self._wgt[rest : self._used] = 0.0
        self._used = rest
        self.origin += n
        return start, cols

    def finalize(self, next_start_sample: int) -> tuple[int, np.ndarray] | None:
        """Emit the columns lying wholly before ``next_start_sample`` (no later window can change them).

        Returns ``(first_column_index, columns [F, n])`` or None; uncovered columns are NaN.
        """
        return self._emit(math.floor(self._frames(next_start_sample)))

    def flush(self, total_samples: int) -> tuple[int, np.ndarray] | None:
        """Emit everything left: every column that starts before the end of the audio, NaN where no window
        covered it (e.g. trailing windows that were dropped or skipped), so the map spans the whole stream."""
        end_col = math.ceil(self._frames(total_samples))
        if self.rows is not None:
            self._ensure(end_col)
        return self._emit(end_col)
