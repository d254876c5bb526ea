"""The asyncio engine with the real onnxruntime backend (and, where said, fake slow/failing wrappers)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from bundles import speechlike
from fakes import POISON, FailingBackend, MalformedBackend, SlowBackend

from stream_guard import AudioFormat, Engine, EngineConfig, StreamClosedError, StreamConfig, scan_array
from stream_guard.core.formats import encode
from stream_guard.core.stream import StreamState
from stream_guard.events import ErrorEvent, ScoreEvent, SummaryEvent


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def collect(stream) -> list:
    return [ev async for ev in stream.events()]


async def feed_in_chunks(stream, data, seed: int, max_len: int, pause: bool = True) -> None:
    rng = np.random.default_rng(seed)
    i = 0
    while i < len(data):
        n = int(rng.integers(0, max_len + 1))
        await stream.feed(data[i : i + n])
        i += n
        if pause:
            await asyncio.sleep(0)


def scores(events) -> list[tuple[str, int, float, float, float]]:
    return [
        (e.stream, e.window_index, e.start_s, e.end_s, e.score) for e in events if isinstance(e, ScoreEvent)
    ]


def offline_scores(meta, backend, fmt, data) -> list[float]:
    st = StreamState("x", meta, fmt)
    windows = st.feed(data) + st.finish()
    return [float(backend.infer(w.samples[None, :])[0][0]) for w in windows]


def test_engine_stream_matches_sans_io_reference(backend) -> None:
    fmt = AudioFormat(8000, "mulaw")
    data = encode(speechlike(6.0, rate=8000, level=0.1, seed=11), fmt)
    ref = offline_scores(backend.metadata, backend, fmt, data)

    async def main():
        async with Engine(backend) as engine:
            stream = await engine.open_stream("call", fmt, StreamConfig(realtime=False))
            consumer = asyncio.create_task(collect(stream))
            await feed_in_chunks(stream, data, seed=1, max_len=400)
            summary = await stream.close()
            return await consumer, summary, await stream.close()

    events, summary, again = run(main())
    assert [s[4] for s in scores(events)] == pytest.approx(ref, abs=1e-5)
    assert events[-1] is summary and again is summary  # close is idempotent
    assert sum(isinstance(e, SummaryEvent) for e in events) == 1
    assert all(e.stream == "call" for e in events)
    assert summary.windows == len(ref) and summary.windows_dropped == 0


def test_scan_equals_streaming_at_another_rate(backend, bundle_path) -> None:
    x = speechlike(5.0, rate=16000, level=0.1, seed=2)
    events = scan_array(x, 16000, bundle_path, provider="cpu", threads=1)
    import soxr

    x441 = soxr.resample(x, 16000, 44100).astype(np.float32)
    fmt = AudioFormat(44100, "float32")

    async def main():
        async with Engine(backend) as engine:
            stream = await engine.open_stream("s", fmt, StreamConfig(realtime=False))
            consumer = asyncio.create_task(collect(stream))
            await feed_in_chunks(stream, encode(x441, fmt), seed=3, max_len=20000)
            await stream.close()
            return await consumer

    streamed = run(main())
    a, b = scores(events), scores(streamed)
    assert [s[1:4] for s in a] == [s[1:4] for s in b]
    np.testing.assert_allclose([s[4] for s in a], [s[4] for s in b], atol=0.05)
    assert isinstance(events[-1], SummaryEvent) and events[-1].stream == "audio"


def test_windows_of_many_streams_share_batches(backend) -> None:
    slow = SlowBackend(backend, delay_s=0.02)  # FAKE wrapper: makes batches form while a call runs
    n_streams = 12
    signals = [speechlike(4.0, level=0.03 if i % 2 else 0.3, seed=i) for i in range(n_streams)]

    async def main():
        cfg = EngineConfig(max_batch=16, max_wait_ms=20, stream_queue_limit=64, max_delay_ms=None)
        async with Engine(slow, cfg) as engine:
            streams = [
                await engine.open_stream(f"s{i}", AudioFormat(16000, "float32")) for i in range(n_streams)
            ]
            consumers = [asyncio.create_task(collect(s)) for s in streams]
            for block in range(0, 64000, 1600):  # 0.1 s blocks to every stream in turn, like live audio
                for s, x in zip(streams, signals, strict=True):
                    await s.feed(x[block : block + 1600])
                await asyncio.sleep(0.002)
            summaries = await asyncio.gather(*(s.close() for s in streams))
            await asyncio.gather(*consumers)
            return summaries, engine.stats()

    summaries, stats = run(main())
    assert stats["batch_size_max"] > 1 and stats["windows_dropped"] == 0
    assert stats["windows_scored"] == sum(s.windows for s in summaries)
    assert [s.verdict for s in summaries] == ["synthetic" if i % 2 == 0 else "real" for i in range(n_streams)]


def test_overload_drops_stalest_windows_and_counts_them(backend) -> None:
    slow = SlowBackend(backend, delay_s=0.05)  # FAKE wrapper: far slower than the audio arrives
    x = speechlike(20.0, level=0.1)

    async def main():
        cfg = EngineConfig(max_batch=1, max_wait_ms=0, stream_queue_limit=2)
        async with Engine(slow, cfg) as engine:
            live = await engine.open_stream("live", AudioFormat(16000, "float32"))
            s_live = await live.close() if await live.feed(x) else None
            offline = await engine.open_stream(
                "file", AudioFormat(16000, "float32"), StreamConfig(realtime=False)
            )
            await offline.feed(x)
            s_file = await offline.close()
            return s_live, s_file, engine.stats()

    s_live, s_file, stats = run(main())
    total = 3 + 37  # 3 warm-up windows + 37 full windows in 20 s at a 0.5 s hop
    assert s_live.windows_dropped > 0 and s_live.windows + s_live.windows_dropped == total
    assert s_file.windows_dropped == 0 and s_file.windows == total
    assert stats["windows_dropped"] == s_live.windows_dropped


def test_windows_too_old_for_a_live_stream_are_dropped(backend) -> None:
    slow = SlowBackend(backend, delay_s=0.3)  # FAKE wrapper: each call takes 0.3 s

    async def main():
        cfg = EngineConfig(max_batch=1, max_wait_ms=0, stream_queue_limit=100, max_delay_ms=500)
        async with Engine(slow, cfg) as engine:
            s = await engine.open_stream("live", AudioFormat(16000, "float32"), StreamConfig(warmup=False))
            await s.feed(speechlike(10.0, level=0.1))  # 17 windows at once, far more than 0.5 s can score
            return await s.close()

    summary = run(main())
    total = 17
    assert summary.windows + summary.windows_dropped == total
    assert 1 <= summary.windows <= 3  # the queue limit is far away: the drops are for age


def test_bad_audio_costs_only_its_stream(backend) -> None:
    good = speechlike(3.0, level=0.1, seed=1)

    async def main():
        async with Engine(backend) as engine:
            a = await engine.open_stream("a", AudioFormat(16000, "float32"))
            b = await engine.open_stream("b", AudioFormat(16000, "float32"))
            c = await engine.open_stream(
                "c", AudioFormat(16000, "float32"), StreamConfig(close_on_error=True)
            )
            ca, cb, cc = (asyncio.create_task(collect(s)) for s in (a, b, c))
            assert await a.feed(good[:16000])
            assert not await a.feed(np.array([0.1, np.nan], np.float32))
            assert await a.feed(b"")
            assert await a.feed(good[16000:])
            assert await b.feed(good)
            assert not await c.feed(np.array([np.inf], np.float32))
            with pytest.raises(StreamClosedError):
                await c.feed(good)
            with pytest.raises(ValueError, match="already open"):
                await engine.open_stream("a", AudioFormat(16000))
            return await asyncio.gather(a.close(), b.close(), c.close()), await asyncio.gather(ca, cb, cc)

    (sa, sb, sc), (ea, eb, ec) = run(main())
    err = [e for e in ea if isinstance(e, ErrorEvent)]
    assert len(err) == 1 and err[0].code == "invalid_audio" and not err[0].fatal and "NaN" in err[0].message
    # the rejected chunk and the empty feed left no trace: "a" scores exactly like "b"
    assert [s[1:4] for s in scores(ea)] == [s[1:4] for s in scores(eb)]
    assert [s[4] for s in scores(ea)] == pytest.approx([s[4] for s in scores(eb)], abs=1e-5)
    assert sa.windows == sb.windows == 6 and sa.verdict == sb.verdict
    assert [e.type for e in ec] == ["error", "summary"] and ec[0].fatal
    assert sc.verdict == "uncertain" and "too_short" in sc.reasons


def test_failing_window_does_not_fail_its_batch_mates(backend) -> None:
    failing = FailingBackend(backend, delay_s=0.01)  # FAKE wrapper that rejects poisoned windows
    bad = speechlike(2.5, level=0.1, seed=1)
    bad[0] = POISON  # the growing windows and the first full window start at sample 0

    async def main():
        cfg = EngineConfig(max_batch=8, max_wait_ms=30)
        async with Engine(failing, cfg) as engine:
            s1 = await engine.open_stream("bad", AudioFormat(16000, "float32"))
            s2 = await engine.open_stream("good", AudioFormat(16000, "float32"))
            c1, c2 = asyncio.create_task(collect(s1)), asyncio.create_task(collect(s2))
            await s1.feed(bad)
            await s2.feed(speechlike(2.5, level=0.1, seed=2))
            return await asyncio.gather(s1.close(), s2.close()), await asyncio.gather(c1, c2)

    (bad_sum, good_sum), (e1, e2) = run(main())
    failures = [e for e in e1 if isinstance(e, ErrorEvent)]
    assert len(failures) == 4 and all(e.code == "inference_failed" for e in failures)  # windows starting at 0
    assert bad_sum.windows == 1 and bad_sum.windows_dropped == 4
    assert good_sum.windows == 5 and good_sum.windows_dropped == 0
    assert not any(isinstance(e, ErrorEvent) for e in e2)


def test_slow_consumer_loses_maps_first_never_the_summary(backend) -> None:
    async def main():
        async with Engine(backend) as engine:
            s = await engine.open_stream(
                "s", AudioFormat(16000, "float32"), StreamConfig(event_queue_limit=8, realtime=False)
            )
            await s.feed(speechlike(15.0, level=0.1))
            summary = await s.close()
            return summary, await collect(s), s.events_dropped

    summary, events, dropped = run(main())
    assert events[-1] is summary and len(events) <= 9
    kept = events[:-1]
    # maps went first, then the oldest scores: what is left are the newest scores
    assert all(isinstance(e, ScoreEvent) for e in kept)
    assert [e.window_index for e in kept] == list(range(summary.windows - len(kept), summary.windows))
    assert dropped > summary.windows - len(kept)  # the older scores and every map event


def test_per_channel_stream_through_the_engine(backend) -> None:
    stereo = np.stack([speechlike(4.0, level=0.03, seed=1), speechlike(4.0, level=0.3, seed=2)], axis=1)
    fmt = AudioFormat(16000, "pcm16", channels=2)

    async def main():
        async with Engine(backend) as engine:
            s = await engine.open_stream("call", fmt, StreamConfig(split_channels=True, realtime=False))
            consumer = asyncio.create_task(collect(s))
            await feed_in_chunks(s, encode(stereo, fmt), seed=5, max_len=3001)
            summary = await s.close()
            return s.ids, summary, await consumer

    ids, summary, events = run(main())
    assert ids == ["call/0", "call/1"]
    per = {e.stream: e for e in events if isinstance(e, SummaryEvent)}
    assert per["call/0"].verdict == "real" and per["call/1"].verdict == "synthetic"
    assert summary.stream == "call" and summary.verdict == "synthetic" and events[-1] is summary


def test_engine_close_closes_open_streams(backend) -> None:
    async def main():
        engine = Engine(backend)
        async with engine:
            s = await engine.open_stream("left-open", AudioFormat(16000, "float32"))
            await s.feed(speechlike(2.0, level=0.1))
        return s.summary, engine.stats()

    summary, stats = run(main())
    assert summary is not None and summary.windows == 4
    assert stats["streams_open"] == 0 and stats["streams_closed"] == 1


def test_close_while_feeding_and_cancelled_feeds_still_finish(backend) -> None:
    slow = SlowBackend(backend, delay_s=0.05)  # FAKE wrapper: keeps feed() waiting for queue room

    async def main():
        cfg = EngineConfig(max_batch=1, max_wait_ms=0, stream_queue_limit=1)
        async with Engine(slow, cfg) as engine:
            a = await engine.open_stream("a", AudioFormat(16000, "float32"), StreamConfig(realtime=False))
            b = await engine.open_stream("b", AudioFormat(16000, "float32"), StreamConfig(realtime=False))
            feed_a = asyncio.create_task(a.feed(speechlike(10.0, level=0.1)))
            feed_b = asyncio.create_task(b.feed(speechlike(10.0, level=0.1)))
            await asyncio.sleep(0.2)
            feed_b.cancel()  # e.g. the client's connection task was cancelled mid-feed
            summary_a, summary_b = await asyncio.gather(a.close(), b.close())
            results = await asyncio.gather(feed_a, feed_b, return_exceptions=True)
            return summary_a, summary_b, results, a.windows_cut, b.windows_cut

    summary_a, summary_b, results, cut_a, cut_b = run(main())
    assert isinstance(results[0], (bool, StreamClosedError))
    assert isinstance(results[1], asyncio.CancelledError)
    for summary, cut in ((summary_a, cut_a), (summary_b, cut_b)):
        assert summary.windows + summary.windows_dropped == cut  # every cut window accounted for
        assert summary.windows >= 1


def test_a_long_chunk_with_one_bad_sample_is_rejected_whole(backend) -> None:
    bad = speechlike(30.0, level=0.1)
    bad[-1] = np.nan

    async def main():
        async with Engine(backend) as engine:
            s = await engine.open_stream("s", AudioFormat(16000, "float32"), StreamConfig(realtime=False))
            accepted = await s.feed(bad)
            again = await s.feed(bad[:-1])
            return accepted, again, await s.close()

    accepted, again, summary = run(main())
    assert accepted is False and again is True
    assert summary.duration_s == pytest.approx(30.0, abs=1e-3)  # only the good copy counts
    assert summary.windows == 3 + 57  # warm-up windows plus full windows of 30 s at a 0.5 s hop


def test_malformed_backend_output_fails_windows_not_the_engine(backend) -> None:
    broken = MalformedBackend(backend, delay_s=0.0)  # FAKE: wrong output shapes, NaN scores

    async def main():
        async with Engine(broken, EngineConfig(max_batch=8, max_wait_ms=20)) as engine:
            s = await engine.open_stream("s", AudioFormat(16000, "float32"), StreamConfig(warmup=False))
            consumer = asyncio.create_task(collect(s))
            await s.feed(speechlike(4.0, level=0.1))
            summary = await s.close()
            return summary, await consumer, engine.stats()

    summary, events, stats = run(main())
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert summary.windows == 0 and summary.windows_dropped == 5 and summary.verdict == "uncertain"
    assert len(errors) == 5 and all(e.code == "inference_failed" for e in errors)
    assert any("non-finite" in e.message for e in errors)
    assert stats["windows_failed"] == 5 and stats["windows_scored"] == 0
