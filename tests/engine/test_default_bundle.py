"""The bundle embedded in the package runs through the engine unchanged, whatever model it holds."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soxr
from bundles import speechlike

from stream_guard import AudioFormat, Engine, StreamConfig
from stream_guard.bundle import default_bundle_path
from stream_guard.core.formats import encode
from stream_guard.events import MapEvent, ScoreEvent, SummaryEvent

pytestmark = pytest.mark.skipif(not default_bundle_path().exists(), reason="no embedded default bundle")


def test_default_bundle_scores_an_8khz_mulaw_call() -> None:
    fmt = AudioFormat(8000, "mulaw")
    payload = encode(soxr.resample(speechlike(4.0, level=0.1), 16000, 8000), fmt)

    async def main():
        async with Engine.from_bundle(None, provider="cpu", threads=1) as engine:
            meta = engine.metadata
            events = await engine.scan(payload, fmt, "call", StreamConfig())
            return meta, events

    meta, events = asyncio.run(main())
    scores = [e for e in events if isinstance(e, ScoreEvent)]
    maps = [e for e in events if isinstance(e, MapEvent)]
    assert scores[0].end_s == pytest.approx(meta.min_audio_s) and scores[0].low_confidence
    assert all(np.isfinite(e.score) and 0.0 <= e.probability <= 1.0 for e in scores)
    n_cols = sum(len(e.columns[0]) for e in maps)
    assert n_cols == pytest.approx(4.0 / meta.map_axes.frame_step_s, abs=1)
    rows = {len(e.columns) for e in maps}
    assert rows == {len(meta.map_axes.freq_hz) or 1}
    assert isinstance(events[-1], SummaryEvent) and events[-1].model == meta.name
    assert events[-1].verdict in ("real", "synthetic") and events[-1].windows == len(scores)


def test_default_bundle_scores_digital_silence_with_finite_numbers() -> None:
    """A muted call sends exact zeros: every window, all-zero ones included, must score finitely."""
    fmt = AudioFormat(16000, "float32")
    audio = np.concatenate([np.zeros(40000, np.float32), speechlike(2.0, level=0.1)])

    async def main():
        async with Engine.from_bundle(None, provider="cpu", threads=1) as engine:
            return await engine.scan(audio, fmt, "muted", StreamConfig(skip_abstaining=False))

    events = asyncio.run(main())
    scores = [e for e in events if isinstance(e, ScoreEvent)]
    assert not [e for e in events if e.type == "error"]
    assert scores and all(np.isfinite(e.score) for e in scores)
    assert events[-1].windows == len(scores) and events[-1].windows_dropped == 0
