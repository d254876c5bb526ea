"""Through the engine: abstaining windows never reach the backend; order, counters and maps stay whole."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
from bundles import speechlike
from fakes import SlowBackend

from stream_guard import AudioFormat, Engine, EngineConfig, StreamConfig
from stream_guard.core.formats import encode
from stream_guard.events import MapEvent, ScoreEvent, SummaryEvent


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def stream_through(engine, stream_id, fmt, data, chunk: int, config=None) -> list:
    stream = await engine.open_stream(stream_id, fmt, config or StreamConfig())
    consumer = asyncio.create_task(_collect(stream))
    for i in range(0, len(data), chunk):
        await stream.feed(data[i : i + chunk])
        await asyncio.sleep(0)
    summary = await stream.close()
    assert stream.windows_skipped == summary.windows_skipped
    return await consumer


async def _collect(stream) -> list:
    return [ev async for ev in stream.events()]


def test_a_silent_call_runs_no_inference(backend) -> None:
    counting = SlowBackend(backend, delay_s=0.0)  # FAKE wrapper: the real bundle, counting its calls
    fmt = AudioFormat(8000, "mulaw")
    silence = encode(np.zeros(8000 * 6, np.float32), fmt)

    async def main():
        async with Engine(counting) as engine:
            events = await stream_through(engine, "muted", fmt, silence, 160)  # 20 ms telephony frames
            return events, engine.stats()

    events, stats = run(main())
    scores = [e for e in events if isinstance(e, ScoreEvent)]
    summary = events[-1]
    assert counting.calls == 0 and stats["windows_scored"] == 0
    assert isinstance(summary, SummaryEvent) and summary.verdict == "uncertain"
    assert summary.reasons == ["no_speech"] and summary.score is None
    assert summary.windows == summary.windows_skipped == len(scores) == stats["windows_skipped"] > 0
    assert [e.window_index for e in scores] == list(range(len(scores)))
    assert all(math.isnan(e.score) and e.reasons == ["no_speech"] for e in scores)
    for ev in events:
        json.loads(ev.to_json())  # allow_nan=False: a NaN reaching JSON would raise here


def test_speech_after_silence_is_scored_in_order_while_windows_wait(backend) -> None:
    # a slow backend keeps scored windows in flight, so later skipped windows must wait for them to keep order
    slow = SlowBackend(backend, delay_s=0.03)  # FAKE wrapper: the real bundle plus a fixed delay per call
    x = np.concatenate(
        [np.zeros(16000 * 3, np.float32), speechlike(3.0, level=0.3, seed=2), np.zeros(16000 * 3, np.float32)]
    )
    fmt = AudioFormat(16000, "pcm16")
    data = encode(x, fmt)

    async def main():
        cfg = EngineConfig(max_batch=4, max_wait_ms=5, max_delay_ms=None, stream_queue_limit=64)
        async with Engine(slow, cfg) as engine:
            events = await stream_through(engine, "call", fmt, data, 1600)
            reference = await stream_through(
                engine, "ref", fmt, data, 1600, StreamConfig(skip_abstaining=False)
            )
            return events, reference, engine.stats()

    events, reference, stats = run(main())
    scores = [e for e in events if isinstance(e, ScoreEvent)]
    assert [e.window_index for e in scores] == list(range(len(scores)))
    skipped = [e for e in scores if math.isnan(e.score)]
    judged = [e for e in scores if not math.isnan(e.score)]
    assert skipped and judged and all(e.reasons for e in skipped)
    assert all(e.end_s > 1.0 and e.start_s < 6.0 for e in judged)  # every judged window holds speech
    summary, ref_summary = events[-1], reference[-1]
    assert summary.verdict == ref_summary.verdict != "uncertain" and summary.alerts == ref_summary.alerts
    assert summary.score == ref_summary.score and summary.windows == ref_summary.windows
    assert summary.windows_skipped == len(skipped) and ref_summary.windows_skipped == 0
    assert stats["windows_skipped"] == len(skipped)
    assert stats["windows_scored"] == len(judged) + ref_summary.windows  # the reference scored all of its own
    assert sum(slow.batch_sizes) == stats["windows_scored"]
    # the map is contiguous, covers the whole stream and has values only where speech was scored
    maps = [e for e in events if isinstance(e, MapEvent)]
    starts = [round(e.start_s / e.frame_step_s) for e in maps]
    widths = [len(e.columns[0]) for e in maps]
    assert starts == list(np.cumsum([0, *widths[:-1]]))
    cols = np.concatenate([np.array(e.columns, dtype=float) for e in maps], axis=1)
    assert cols.shape[1] == 9 * 25
    assert np.isnan(cols[:, :25]).all() and np.isnan(cols[:, -25:]).all()
    assert not np.isnan(cols[:, 90:140]).any()


def test_map_picture_renders_a_stream_with_skipped_windows(backend, tmp_path) -> None:
    from stream_guard.sinks.map_png import MapRecorder, render_map_png

    x = np.concatenate([np.zeros(16000 * 2, np.float32), speechlike(3.0, level=0.1, seed=3)])

    async def main():
        async with Engine(backend) as engine:
            return await engine.scan(x, AudioFormat(16000, "float32"), "clip")

    events = run(main())
    assert any(isinstance(e, ScoreEvent) and math.isnan(e.score) for e in events)
    recorder = MapRecorder()
    for ev in events:
        recorder.write(ev)
    out = render_map_png(tmp_path / "map.png", recorder, x, 16000, "clip")
    assert out.stat().st_size > 1000
