"""StreamState end to end with the real onnxruntime backend, driven synchronously."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from bundles import speechlike
from statedriver import random_chunks, run_state

from stream_guard.core.formats import AudioFormat, AudioFormatError, encode
from stream_guard.core.stream import StreamClosedError, StreamConfig, StreamState, make_stream_states
from stream_guard.events import MapEvent, ScoreEvent, SummaryEvent


def scores_of(events) -> list[tuple[int, float, float, float]]:
    return [(e.window_index, e.start_s, e.end_s, e.score) for e in events if isinstance(e, ScoreEvent)]


def map_of(events) -> np.ndarray:
    maps = [e for e in events if isinstance(e, MapEvent)]
    starts = [round(e.start_s / e.frame_step_s) for e in maps]
    widths = [len(e.columns[0]) for e in maps]
    assert starts == list(np.cumsum([0, *widths[:-1]])), "map columns must be contiguous and sent once"
    return np.concatenate([np.array(e.columns, dtype=float) for e in maps], axis=1)


@pytest.mark.parametrize("encoding", ["pcm16", "float32", "mulaw"])
def test_streaming_invariance_random_byte_chunks(meta, backend, encoding: str) -> None:
    fmt = AudioFormat(16000, encoding)
    raw = encode(speechlike(6.3, level=0.1, seed=3), fmt)
    one_events, _ = run_state(StreamState("s", meta, fmt), [raw], backend)
    for seed in (1, 2):
        events, _ = run_state(
            StreamState("s", meta, fmt), random_chunks(raw, seed, 3000), backend, shuffle_seed=seed
        )
        a, b = scores_of(one_events), scores_of(events)
        assert [x[:3] for x in a] == [x[:3] for x in b]
        np.testing.assert_allclose([x[3] for x in a], [x[3] for x in b], rtol=0, atol=1e-5)
        np.testing.assert_allclose(map_of(one_events), map_of(events), atol=1e-4)
        assert one_events[-1].score == pytest.approx(events[-1].score, abs=1e-5)


@pytest.mark.parametrize(
    "rate,encoding", [(8000, "mulaw"), (8000, "alaw"), (44100, "float32"), (48000, "pcm16")]
)
def test_other_rates_and_formats_score_close_to_native(meta, backend, rate: int, encoding: str) -> None:
    # the reference is the same band-limited audio delivered at the model's rate as float32, so what remains
    # is the difference the input path makes (codec quantisation, streaming resampler)
    xr = soxr.resample(speechlike(5.0, level=0.1, seed=5), 16000, rate)
    native, _ = run_state(
        StreamState("n", meta, AudioFormat(16000, "float32")), [soxr.resample(xr, rate, 16000)], backend
    )
    fmt = AudioFormat(rate, encoding)
    events, windows = run_state(StreamState("r", meta, fmt), random_chunks(encode(xr, fmt), 7, 5000), backend)
    a, b = scores_of(native), scores_of(events)
    assert [x[:3] for x in a] == [x[:3] for x in b]
    assert all(w.samples.dtype == np.float32 for w in windows)
    tol = 0.2 if encoding in ("mulaw", "alaw") else 1e-3  # G.711 adds quantisation noise
    np.testing.assert_allclose([x[3] for x in a], [x[3] for x in b], atol=tol)
    summary = events[-1]
    assert isinstance(summary, SummaryEvent) and summary.duration_s == pytest.approx(5.0, abs=1e-3)


def test_event_sequence_first_score_and_summary(meta, backend) -> None:
    events, windows = run_state(
        StreamState("s", meta, AudioFormat(16000, "float32")), [speechlike(3.2, level=0.1)], backend
    )
    first = next(e for e in events if isinstance(e, ScoreEvent))
    assert first.end_s == pytest.approx(0.5) and first.low_confidence  # time-to-first-score = min_audio_s
    assert [(w.start_s, w.end_s, w.low_confidence) for w in windows] == [
        (0.0, 0.5, True),
        (0.0, 1.0, True),
        (0.0, 1.5, True),
        (0.0, 2.0, False),
        (0.5, 2.5, False),
        (1.0, 3.0, False),
        (1.2, 3.2, False),
    ]
    assert isinstance(events[-1], SummaryEvent)
    s = events[-1]
    full = [e.score for e in events if isinstance(e, ScoreEvent) and not e.low_confidence]
    assert s.score == pytest.approx(np.mean(full))
    assert s.windows == 7 and s.verdict == "real" and s.threshold == meta.calibration.threshold
    assert map_of(events).shape == (16, 80)  # 3.2 s of 40 ms columns


def test_loud_audio_raises_alert_and_synthetic_verdict(meta, backend) -> None:
    quiet = speechlike(4.0, level=0.03, seed=1)
    loud = speechlike(6.0, level=0.3, seed=2)
    events, _ = run_state(
        StreamState("s", meta, AudioFormat(16000, "float32")),
        [np.concatenate([quiet, loud, quiet, quiet])],
        backend,
    )
    alerts = [(e.state, e.at_s) for e in events if e.type == "alert"]
    assert [a for a, _ in alerts] == ["raised", "cleared"]
    assert 4.0 < alerts[0][1] <= 7.5 and alerts[1][1] > 10.0  # window length + smoothing delay the alert
    assert events[-1].alerts == 1 and 0 < events[-1].synthetic_fraction < 1


def test_silence_and_clipping_abstain(meta, backend) -> None:
    events, _ = run_state(
        StreamState("s", meta, AudioFormat(16000, "float32")), [np.zeros(16000 * 3, np.float32)], backend
    )
    scores = [e for e in events if isinstance(e, ScoreEvent)]
    assert scores and all(e.verdict == "uncertain" and e.reasons == ["no_speech"] for e in scores)
    assert events[-1].verdict == "uncertain" and events[-1].reasons == ["no_speech"]
    assert events[-1].score is None
    square = np.sign(np.sin(np.linspace(0, 2000, 16000 * 3))).astype(np.float32)
    events, _ = run_state(StreamState("c", meta, AudioFormat(16000, "float32")), [square], backend)
    assert all("clipped" in e.reasons for e in events if isinstance(e, ScoreEvent))


def test_too_short_nan_empty_and_closed(meta, backend) -> None:
    st = StreamState("s", meta, AudioFormat(16000, "float32"))
    assert st.feed(b"") == [] and st.feed(np.zeros(0, np.float32)) == []
    with pytest.raises(AudioFormatError, match="stream 's'.*NaN"):
        st.feed(np.array([0.1, np.nan], np.float32))
    assert st.feed(speechlike(0.3)) == []
    assert st.finish() == []
    assert st.finish() == []  # idempotent
    with pytest.raises(StreamClosedError):
        st.feed(speechlike(0.1))
    st.flush()
    s = st.summary()
    assert s.verdict == "uncertain" and "too_short" in s.reasons and s.windows == 0
    assert s.duration_s == pytest.approx(0.3) and st.rejected_chunks == 1


def test_dropped_windows_leave_null_columns_and_are_counted(meta, backend) -> None:
    st = StreamState("s", meta, AudioFormat(16000, "float32"), StreamConfig(warmup=False))
    windows = st.feed(speechlike(4.0, level=0.1)) + st.finish()
    events = []
    for w in windows:
        if w.index == 0:
            events += st.on_dropped(w)
        else:
            score, amap = backend.infer(w.samples[None, :])
            events += st.on_result(w, float(score[0]), amap[0], 1.0)
    events += st.flush()
    cols = map_of(events)
    assert np.isnan(cols[:, :12]).all() and not np.isnan(cols[:, 13:]).any()
    assert '"columns":[[null' in next(e for e in events if isinstance(e, MapEvent)).to_json()
    s = st.summary()
    assert s.windows_dropped == 1 and s.windows == len(windows) - 1


def test_time_track_bundle(time_bundle_path) -> None:
    from stream_guard.backends import OnnxRuntimeBackend

    b = OnnxRuntimeBackend(time_bundle_path, provider="cpu", threads=1)
    events, _ = run_state(
        StreamState("t", b.metadata, AudioFormat(16000, "float32")), [speechlike(3.0, level=0.1)], b
    )
    maps = [e for e in events if isinstance(e, MapEvent)]
    assert maps and all(len(e.columns) == 1 and e.freq_hz == [] for e in maps)
    assert sum(len(e.columns[0]) for e in maps) == 75


def test_per_channel_mode_scores_each_speaker(meta, backend) -> None:
    quiet, loud = speechlike(4.0, level=0.03, seed=1), speechlike(4.0, level=0.3, seed=2)
    stereo = np.stack([quiet, loud], axis=1)
    fmt = AudioFormat(16000, "pcm16", channels=2)
    cfg = StreamConfig(split_channels=True, channel_labels=("caller", "agent"))
    states = make_stream_states("call", meta, fmt, cfg)
    assert [s.stream_id for s in states] == ["call/caller", "call/agent"]
    raw = encode(stereo, fmt)
    chunks = random_chunks(raw, 4, 999)
    verdicts = []
    for st in states:
        events, _ = run_state(st, chunks, backend)
        verdicts.append(events[-1].verdict)
        assert {e.stream for e in events} == {st.stream_id}
    assert verdicts == ["real", "synthetic"]
    mono = make_stream_states("mix", meta, fmt, StreamConfig())
    assert len(mono) == 1 and mono[0].stream_id == "mix"
    with pytest.raises(ValueError, match="labels"):
        make_stream_states("x", meta, fmt, StreamConfig(split_channels=True, channel_labels=("a",)))


def test_caller_may_reuse_its_buffer_after_feed(meta, backend) -> None:
    x = speechlike(3.0, level=0.1, seed=9)
    reference, _ = run_state(StreamState("a", meta, AudioFormat(16000, "float32")), [x.copy()], backend)
    st = StreamState("b", meta, AudioFormat(16000, "float32"))
    buf = np.empty(800, np.float32)  # like a sound card callback's buffer, overwritten for every block
    events = []
    for i in range(0, len(x), 800):
        n = len(x[i : i + 800])
        buf[:n] = x[i : i + 800]
        for w in st.feed(buf[:n]):
            score, amap = backend.infer(w.samples[None, :])
            events += st.on_result(w, float(score[0]), amap[0], 1.0)
        buf[:] = 0.5  # the caller scribbles over its buffer before the next block
    got = [e.score for e in events if isinstance(e, ScoreEvent)]
    want = [e.score for e in reference if isinstance(e, ScoreEvent)][: len(got)]
    assert len(got) == 6 and got == pytest.approx(want, abs=1e-5)
