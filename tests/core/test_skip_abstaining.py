"""Abstaining windows (silence, clipping) are reported without running the model, and nothing else changes."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
import soxr
from bundles import speechlike
from hypothesis import given, settings
from hypothesis import strategies as st
from statedriver import random_chunks, run_state

from stream_guard.core.formats import AudioFormat, encode
from stream_guard.core.stream import StreamConfig, StreamState, Window
from stream_guard.core.verdict import VerdictMachine
from stream_guard.events import MapEvent, ScoreEvent, SummaryEvent


class CountingBackend:
    """The real test bundle, counting the windows it is asked to score (not a model: a wrapper)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.metadata = inner.metadata
        self.windows = 0
        self._lock = threading.Lock()

    def infer(self, audio: np.ndarray):
        with self._lock:
            self.windows += audio.shape[0]
        return self.inner.infer(audio)


def silence_speech_silence(rate: int = 16000) -> np.ndarray:
    x = np.concatenate(
        [np.zeros(3 * 16000, np.float32), speechlike(3.0, level=0.1, seed=4), np.zeros(2 * 16000, np.float32)]
    )
    return x if rate == 16000 else soxr.resample(x, 16000, rate).astype(np.float32)


def score_events(events) -> list[ScoreEvent]:
    return [e for e in events if isinstance(e, ScoreEvent)]


def map_of(events) -> np.ndarray:
    blocks = [np.array(e.columns, dtype=float) for e in events if isinstance(e, MapEvent)]
    return np.concatenate(blocks, axis=1)


def test_silence_runs_no_inference_and_is_reported(meta, backend) -> None:
    counting = CountingBackend(backend)
    events, windows = run_state(
        StreamState("s", meta, AudioFormat(16000, "float32")), [np.zeros(16000 * 4, np.float32)], counting
    )
    assert windows and all(w.skip for w in windows) and counting.windows == 0
    scores = score_events(events)
    assert [e.window_index for e in scores] == list(range(len(windows)))
    for e in scores:
        assert e.verdict == "uncertain" and e.reasons == ["no_speech"]
        assert math.isnan(e.score) and math.isnan(e.probability) and math.isnan(e.smoothed)
        doc = json.loads(e.to_json())  # NaN never reaches JSON
        assert doc["score"] is None and doc["probability"] is None and doc["smoothed"] is None
    # no window was scored, so no map column has a value: the map stays empty (columns are sent once a
    # scored window fixes the map's shape, null where nothing scored covered them)
    assert not [e for e in events if isinstance(e, MapEvent)]
    summary = events[-1]
    assert isinstance(summary, SummaryEvent)
    assert summary.verdict == "uncertain" and summary.reasons == ["no_speech"] and summary.score is None
    assert summary.windows == len(windows) and summary.windows_skipped == len(windows)
    assert summary.windows_dropped == 0 and summary.max_score is None


def test_skipping_changes_no_verdict_only_the_work(meta, backend) -> None:
    """Speech between silences: the judged windows' events, alerts and the summary are those of a run that
    scores everything; the skipped windows are exactly the abstaining ones."""
    fmt = AudioFormat(16000, "float32")
    x = silence_speech_silence()
    counting = CountingBackend(backend)
    skip_events, windows = run_state(StreamState("s", meta, fmt), [x], counting)
    full_events, full_windows = run_state(
        StreamState("s", meta, fmt, StreamConfig(skip_abstaining=False)), [x], backend
    )
    assert [w.reasons for w in windows] == [w.reasons for w in full_windows]
    assert [w.skip for w in windows] == [bool(w.reasons) for w in windows]
    assert not any(w.skip for w in full_windows)
    n_skipped = sum(w.skip for w in windows)
    assert 0 < n_skipped < len(windows) and counting.windows == len(windows) - n_skipped

    a, b = score_events(skip_events), score_events(full_events)
    assert [e.window_index for e in a] == [e.window_index for e in b] == list(range(len(windows)))
    smoothed_seen, last_smoothed = False, math.nan
    for ea, eb, w in zip(a, b, windows, strict=True):
        assert (ea.start_s, ea.end_s, ea.reasons) == (eb.start_s, eb.end_s, eb.reasons)
        assert ea.verdict == eb.verdict
        if w.skip:
            assert math.isnan(ea.score) and math.isnan(ea.probability)
            # the smoothed value is carried through the silence (NaN only before any judged window)
            assert math.isnan(ea.smoothed) != smoothed_seen
            if smoothed_seen:
                assert ea.smoothed == pytest.approx(last_smoothed)
        else:
            assert (ea.score, ea.probability, ea.smoothed) == (eb.score, eb.probability, eb.smoothed)
            smoothed_seen, last_smoothed = True, ea.smoothed
    alerts = [(e.state, e.at_s) for e in skip_events if e.type == "alert"]
    assert alerts == [(e.state, e.at_s) for e in full_events if e.type == "alert"]

    sa, sb = skip_events[-1], full_events[-1]
    for key in ("verdict", "score", "probability", "synthetic_fraction", "alerts", "reasons", "duration_s"):
        assert getattr(sa, key) == getattr(sb, key), key
    assert sa.windows == sb.windows == len(windows)
    assert (sa.windows_skipped, sb.windows_skipped) == (n_skipped, 0)
    assert sa.verdict != "uncertain" and sa.score is not None


def test_skipped_windows_leave_the_map_as_dropped_ones_do(meta, backend) -> None:
    """A skipped window contributes no map columns: the stitched map equals the one where the same windows
    were dropped (null where no scored window covers a column, the scored windows' values elsewhere)."""
    fmt = AudioFormat(16000, "float32")
    x = silence_speech_silence()
    skip_events, windows = run_state(StreamState("s", meta, fmt), [x], backend)
    st_ = StreamState("d", meta, fmt, StreamConfig(skip_abstaining=False))
    ws: list[Window] = st_.feed(x) + st_.finish()
    dropped_events = []
    for w in ws:
        if w.reasons:
            dropped_events += st_.on_dropped(w)
        else:
            score, amap = backend.infer(w.samples[None, :])
            dropped_events += st_.on_result(w, float(score[0]), amap[0], 1.0)
    dropped_events += st_.flush()
    m_skip, m_drop = map_of(skip_events), map_of(dropped_events)
    assert m_skip.shape == m_drop.shape == (16, int(np.ceil(len(x) / 640)))
    np.testing.assert_array_equal(np.isnan(m_skip), np.isnan(m_drop))
    np.testing.assert_allclose(m_skip[~np.isnan(m_skip)], m_drop[~np.isnan(m_drop)], rtol=0, atol=1e-6)
    assert np.isnan(m_skip[:, :25]).all()  # the first second is silence covered only by skipped windows
    assert not np.isnan(m_skip[:, 75:150]).any()  # 3-6 s: speech, scored
    assert '"columns":[[null' in next(e for e in skip_events if isinstance(e, MapEvent)).to_json()


def test_clipped_windows_are_skipped_too_and_the_switch_turns_it_off(meta, backend) -> None:
    square = np.sign(np.sin(np.linspace(0, 2000, 16000 * 3))).astype(np.float32)
    counting = CountingBackend(backend)
    events, windows = run_state(StreamState("c", meta, AudioFormat(16000, "float32")), [square], counting)
    assert all(w.skip and "clipped" in w.reasons for w in windows) and counting.windows == 0
    assert events[-1].windows_skipped == len(windows) and events[-1].reasons == ["clipped"]
    # a reason that is not in abstain_on neither abstains nor skips
    fmt = AudioFormat(16000, "float32")
    cfg = StreamConfig(abstain_on=("no_speech",))
    events, windows = run_state(StreamState("c", meta, fmt, cfg), [square], counting)
    assert not any(w.skip for w in windows) and counting.windows == len(windows)
    assert events[-1].windows_skipped == 0 and events[-1].score is not None
    counting.windows = 0
    cfg = StreamConfig(skip_abstaining=False)
    events, windows = run_state(StreamState("z", meta, fmt, cfg), [square], counting)
    assert counting.windows == len(windows) and all(np.isfinite(e.score) for e in score_events(events))


def test_only_abstaining_windows_may_be_skipped_and_any_window_may_be_scored(meta, backend) -> None:
    st_ = StreamState("s", meta, AudioFormat(16000, "float32"))
    (w,) = st_.feed(speechlike(0.5, level=0.1))
    assert not w.skip
    with pytest.raises(ValueError, match="no abstain reason"):
        st_.on_skipped(w)
    quiet = StreamState("q", meta, AudioFormat(16000, "float32"))
    (z,) = quiet.feed(np.zeros(8000, np.float32))
    assert z.skip and z.reasons == ["no_speech"]
    # a driver that ignores ``skip`` still gets a scored (abstaining) window, as before skipping existed
    score, amap = backend.infer(z.samples[None, :])
    (ev, *_) = quiet.on_result(z, float(score[0]), amap[0], 1.0)
    assert isinstance(ev, ScoreEvent) and np.isfinite(ev.score) and ev.verdict == "uncertain"
    assert quiet.skipped == 0 and quiet.scored == 1


def test_verdict_hold_keeps_the_state() -> None:
    from bundles import bundle_metadata

    from stream_guard.bundle import BundleMetadata

    cal = BundleMetadata.from_dict(bundle_metadata()).calibration
    vm = VerdictMachine(cal, smoothing=0.5, alert_on=0.8, alert_off=0.5, alert_windows=1)
    first = vm.hold()
    assert math.isnan(first.probability) and math.isnan(first.smoothed) and first.verdict == "uncertain"
    high = cal.center + 10 * cal.scale
    raised = vm.step(high)
    assert raised.alert == "raised"
    held = vm.hold()
    assert held.smoothed == raised.smoothed and held.alert is None and vm.alert_raised and vm.alerts == 1


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    case=st.sampled_from([(16000, "float32"), (16000, "pcm16"), (8000, "mulaw"), (44100, "pcm16")]),
    seed=st.integers(0, 2**16),
    max_len=st.sampled_from([7, 160, 999, 7000]),
)
def test_skip_decisions_and_events_independent_of_chunking(meta, backend, case, seed, max_len) -> None:
    rate, encoding = case
    fmt = AudioFormat(rate, encoding)
    raw = encode(silence_speech_silence(rate)[: int(6.5 * rate)], fmt)
    one, w1 = run_state(StreamState("s", meta, fmt), [raw], backend)
    chunks = random_chunks(raw, seed, max_len)
    many, w2 = run_state(StreamState("s", meta, fmt), chunks, backend, shuffle_seed=seed)

    def plan(ws: list[Window]) -> list[tuple[int, bool, list[str]]]:
        return [(w.start_sample, w.skip, w.reasons) for w in ws]

    assert plan(w1) == plan(w2)
    a, b = score_events(one), score_events(many)
    assert [(e.window_index, e.verdict, math.isnan(e.score)) for e in a] == [
        (e.window_index, e.verdict, math.isnan(e.score)) for e in b
    ]
    np.testing.assert_allclose([e.score for e in a], [e.score for e in b], rtol=0, atol=1e-5)
    assert one[-1].windows_skipped == many[-1].windows_skipped > 0
    np.testing.assert_allclose(map_of(one), map_of(many), atol=1e-4)
