"""Streaming resampling, the ring buffer and the window plan."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from stream_guard.core.resample import StreamResampler
from stream_guard.core.ringbuffer import RingBuffer
from stream_guard.core.windowing import WindowPlanner


@pytest.mark.parametrize("rate", [8000, 44100, 48000, 16000])
def test_chunked_resampling_equals_one_shot(rate: int) -> None:
    rng = np.random.default_rng(rate)
    x = (rng.standard_normal((rate * 2, 1)) * 0.1).astype(np.float32)
    one = soxr.resample(x, rate, 16000) if rate != 16000 else x
    rs = StreamResampler(rate, 16000, 1)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 3000))
        parts.append(rs.process(x[i : i + n]))
        i += n
    parts.append(rs.flush())
    out = np.concatenate(parts)
    assert out.shape == one.shape
    np.testing.assert_allclose(out, one, atol=1e-6)


def test_ring_buffer_wraps_and_refuses_old_samples() -> None:
    rb = RingBuffer(10)
    data = np.arange(25, dtype=np.float32)
    for chunk in np.array_split(data, 7):
        rb.write(chunk)
    assert rb.total == 25 and rb.oldest == 15
    assert rb.read(15, 25).tolist() == list(range(15, 25))
    assert rb.read(18, 21).tolist() == [18, 19, 20]
    with pytest.raises(IndexError):
        rb.read(14, 20)
    rb.write(np.arange(100, 130, dtype=np.float32))  # larger than the capacity at once
    assert rb.read(rb.total - 10, rb.total).tolist() == list(range(120, 130))


def spans(planner: WindowPlanner, total: int, step: int) -> list[tuple[int, int, bool]]:
    out = []
    for avail in range(step, total + step, step):
        out += [(s.start, s.end, s.low_confidence) for s in planner.advance(min(avail, total))]
    out += [(s.start, s.end, s.low_confidence) for s in planner.finish(total)]
    return out


def test_window_plan_warmup_full_and_tail() -> None:
    # window 2.0 s, hop 0.5 s, min 0.5 s at 100 samples/s
    got = spans(WindowPlanner(200, 50, 50), 330, 7)
    assert got == [
        (0, 50, True),
        (0, 100, True),
        (0, 150, True),  # growing, low confidence
        (0, 200, False),
        (50, 250, False),
        (100, 300, False),  # full windows every hop
        (130, 330, False),  # tail ending at the last sample, full length
    ]


def test_window_plan_independent_of_chunking() -> None:
    a = spans(WindowPlanner(200, 50, 30), 1234, 1)
    b = spans(WindowPlanner(200, 50, 30), 1234, 333)
    assert a == b
    assert a[0] == (0, 30, True) and a[1] == (0, 50, True)


def test_window_plan_short_streams() -> None:
    assert spans(WindowPlanner(200, 50, 50), 49, 10) == []  # shorter than the minimum: nothing scored
    assert spans(WindowPlanner(200, 50, 50), 120, 10) == [(0, 50, True), (0, 100, True), (0, 120, True)]
    assert spans(WindowPlanner(200, 50, 50), 200, 10) == [
        (0, 50, True),
        (0, 100, True),
        (0, 150, True),
        (0, 200, False),
    ]
    # without warm-up the first score waits for a full window
    assert spans(WindowPlanner(200, 50, 50, warmup=False), 260, 10) == [
        (0, 200, False),
        (50, 250, False),
        (60, 260, False),
    ]
