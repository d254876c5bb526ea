"""Drive a sans-I/O StreamState with a real backend, synchronously (no engine, no asyncio)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from stream_guard.core.stream import StreamState, Window
from stream_guard.events import Event


def run_state(
    state: StreamState, chunks: Iterable[bytes | np.ndarray], backend, shuffle_seed: int | None = None
) -> tuple[list[Event], list[Window]]:
    """Feed every chunk, score each window with ``backend`` (optionally out of order), finish.

    Windows marked ``skip`` (abstaining) are resolved with ``on_skipped`` instead of the model, as the engine
    does; ``backend`` may count its calls to show which windows reached it.
    """
    events: list[Event] = []
    windows: list[Window] = []
    pending: list[Window] = []
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None

    def resolve(ws: list[Window]) -> None:
        order = list(range(len(ws)))
        if rng is not None:
            rng.shuffle(order)
        for i in order:
            w = ws[i]
            if w.skip:
                events.extend(state.on_skipped(w))
                continue
            score, amap = backend.infer(w.samples[None, :])
            events.extend(state.on_result(w, float(score[0]), amap[0], 1.0))

    for chunk in chunks:
        new = state.feed(chunk)
        windows += new
        pending += new
        if rng is None or len(pending) >= 3:
            resolve(pending)
            pending = []
    tail = state.finish()
    windows += tail
    resolve(pending + tail)
    events.extend(state.flush())
    events.append(state.summary())
    return events, windows


def random_chunks(data: bytes | np.ndarray, seed: int, max_len: int) -> list:
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(data):
        n = int(rng.integers(0, max_len + 1))  # zero-length chunks included on purpose
        out.append(data[i : i + n])
        i += n
    return out
