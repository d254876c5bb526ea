"""Property tests: chunking never changes what the core computes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_guard.core.formats import AudioFormat, Decoder, decode, encode
from stream_guard.core.stitching import MapStitcher
from stream_guard.core.windowing import WindowPlanner


def split(data, cuts: list[int]):
    cuts = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@settings(max_examples=60, deadline=None)
@given(
    encoding=st.sampled_from(["pcm16", "float32", "mulaw", "alaw"]),
    channels=st.integers(1, 3),
    frames=st.integers(0, 300),
    cuts=st.lists(st.integers(0, 5000), max_size=12),
)
def test_decoder_output_independent_of_byte_chunking(encoding, channels, frames, cuts) -> None:
    fmt = AudioFormat(8000, encoding, channels)
    x = np.random.default_rng(frames).uniform(-1, 1, (frames, channels)).astype(np.float32)
    raw = encode(x, fmt)
    dec = Decoder(fmt)
    parts = [dec.decode(p) for p in split(raw, cuts)]
    out = np.concatenate(parts) if parts else np.zeros((0, channels), np.float32)
    assert np.array_equal(out, decode(raw, fmt)) and dec.pending_bytes == 0


@settings(max_examples=80, deadline=None)
@given(
    window=st.integers(10, 400),
    hop_frac=st.floats(0.05, 1.0),
    min_frac=st.floats(0.05, 1.0),
    total=st.integers(0, 3000),
    cuts=st.lists(st.integers(0, 3000), max_size=15),
)
def test_window_plan_is_a_function_of_sample_counts(window, hop_frac, min_frac, total, cuts) -> None:
    hop, min_samples = max(1, int(window * hop_frac)), max(1, int(window * min_frac))

    def plan(points: list[int]) -> list[tuple[int, int, bool]]:
        p = WindowPlanner(window, hop, min_samples)
        out = [(s.start, s.end, s.low_confidence) for n in points for s in p.advance(n)]
        return out + [(s.start, s.end, s.low_confidence) for s in p.finish(total)]

    points = sorted({c % (total + 1) for c in cuts}) + [total]
    spans = plan(points)
    assert spans == plan([total])
    starts = [s for s, _, _ in spans]
    assert starts == sorted(starts)  # map stitching relies on non-decreasing starts
    assert all(e - s == window or low for s, e, low in spans)
    assert all(0 <= s < e <= total for s, e, _ in spans)
    if total >= min_samples:
        assert spans and spans[-1][1] == total  # the end of the audio is always covered
        assert spans[0][1] == min(min_samples, window)  # the first score comes at min_audio_s


@settings(max_examples=40, deadline=None)
@given(hop=st.integers(1, 40000), seed=st.integers(0, 2**16))
def test_stitched_columns_are_emitted_exactly_once(hop: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    st_ = MapStitcher(0.04, 16000)
    starts = list(range(0, 5 * 16000, hop))[:60]
    emitted = []
    for i, s in enumerate(starts):
        st_.add(s, rng.standard_normal((2, 50)))
        out = st_.finalize(starts[i + 1] if i + 1 < len(starts) else s)
        if out:
            emitted.append(out)
    last = st_.flush(starts[-1] + 32000)
    if last:
        emitted.append(last)
    cols = [c for c0, block in emitted for c in range(c0, c0 + block.shape[1])]
    assert cols == list(range(len(cols)))
    assert len(cols) == int(np.ceil((starts[-1] + 32000) / 640))
    assert not np.isnan(np.concatenate([b for _, b in emitted], axis=1)).any() or hop > 32000


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    encoding=st.sampled_from(["pcm16", "float32", "mulaw", "alaw"]),
    channels=st.integers(1, 2),
    frames=st.integers(0, 200),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
    kind=st.sampled_from([bytes, bytearray, memoryview]),
)
def test_decoder_same_for_any_buffer_type_and_owns_its_output(encoding, channels, frames, cuts, kind) -> None:
    """The whole-frame fast path and the carry path agree for bytes, bytearray and memoryview chunks, and
    the samples never alias the caller's buffer (a caller may reuse it right after the call)."""
    fmt = AudioFormat(16000, encoding, channels)
    x = np.random.default_rng(frames).uniform(-1, 1, (frames, channels)).astype(np.float32)
    raw = encode(x, fmt)
    dec = Decoder(fmt)
    parts = []
    for p in split(raw, cuts):
        buf = bytearray(p)
        out = dec.decode(kind(buf) if kind is not bytes else bytes(buf))
        buf[:] = b"\x55" * len(buf)  # the caller scribbles over its buffer
        parts.append(out)
    got = np.concatenate(parts) if parts else np.zeros((0, channels), np.float32)
    assert np.array_equal(got, decode(raw, fmt)) and dec.pending_bytes == 0
