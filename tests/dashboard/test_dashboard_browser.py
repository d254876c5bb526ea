"""The dashboard in a real headless Chromium: the page streams a file over WebRTC as its microphone, the
server scores it, and the page shows the scores and the anomaly map; the scores match a direct scan of the
same audio after the Opus round trip.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soxr
from chromium import find_chromium
from e2e import RATE, alternating_noise, locate, microphone_session, serving, write_wav

from stream_guard.backends import OnnxRuntimeBackend
from stream_guard.core import AudioFormat, StreamConfig
from stream_guard.engine import Engine
from stream_guard.events import ScoreEvent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_chromium() is None, reason="needs Chromium (apt-get install chromium)"),
]

# Scores of the same windows, live through Chromium -> Opus -> aiortc versus scanned from the file. The test
# bundle's score is a mean log band energy; over this file it spans about 7.5. Measured: |score difference|
# at most 0.055 (median 0.02), |probability difference| at most 0.013 with the server asking for 128 kbit/s
# Opus; at a browser's default bitrate the quiet segments arrive ~3 dB low and the differences reach 0.7.
SCORE_TOLERANCE = 0.25
PROBABILITY_TOLERANCE = 0.1


async def reference_scores(bundle, audio16: np.ndarray) -> dict[int, ScoreEvent]:
    """Scan the audio with the engine directly (what ``stream-guard scan`` does), by window index."""
    backend = OnnxRuntimeBackend(bundle, provider="cpu", threads=1)
    async with Engine(backend, owns_backend=True) as engine:
        events = await engine.scan(audio16, AudioFormat(16000, "float32"), "reference", StreamConfig())
    return {e.window_index: e for e in events if isinstance(e, ScoreEvent)}


def test_page_streams_a_file_and_shows_scores_that_match_a_scan(bundle_path, tmp_path):
    audio = alternating_noise(lead_s=1.5)
    wav = write_wav(tmp_path / "fake-microphone.wav", audio)
    shot = tmp_path / "dashboard.png"

    async def main():
        async with serving(bundle_path, tmp_path) as server:
            run = await microphone_session(server, wav, seconds=len(audio) / RATE, screenshot=shot)
            for _ in range(300):  # the peer closes after the page has its summary
                if server.webrtc.stats()["peers"] == 0:
                    break
                await asyncio.sleep(0.1)
            stats = server.webrtc.stats()
        return run, stats

    run, stats = asyncio.run(main())

    # --- what the page shows ---
    mine = [c for c in run.cards if c.get("mine") == "true"]
    assert len(mine) == 1, run.cards
    card = mine[0]
    assert run.dom_text["label"] == "My microphone"
    assert card["ended"] == "true" and run.dom_text["ended"].startswith("ended")
    assert len(run.score_log) >= 15, run.console
    assert run.dom_text["windows"] == str(len(run.score_log)) == card["windows"]
    last = run.score_log[-1]["score"]  # None: an abstaining window, never run through the model
    assert run.dom_text["score"] == ("–" if last is None else f"{last:.3f}")
    assert any(entry["score"] is None for entry in run.score_log), "silence abstains, no inference"
    assert run.dom_text["verdict"] in ("real", "synthetic", "uncertain")
    assert int(card.get("alertsRaised", 0)) >= 1, "the loud segments should have raised an alert"
    assert int(card["mapColumns"]) >= 150 and card["mapRows"] == "16"
    assert run.heatmap["colours"] >= 50 and run.heatmap["lit"] >= 0.15, run.heatmap
    assert shot.exists() and shot.stat().st_size > 10_000
    assert stats["peers"] == 0 and stats["peer_connections"] == 0

    # --- the same scores as scanning the same audio ---
    reference16 = soxr.resample(audio, RATE, 16000).astype(np.float32)
    received = run.received.astype(np.float32) / 32768.0
    offset = locate(received, reference16)
    assert 0 < offset < int(1.5 * 16000), f"audio lost past the silent lead (offset {offset / 16000:.2f} s)"
    reference = asyncio.run(reference_scores(bundle_path, reference16[offset:]))
    covered_s = (len(reference16) - offset) / 16000
    pairs = [
        (entry, reference[entry["window"]])
        for entry in run.score_log
        if entry["window"] in reference and entry["end_s"] <= covered_s - 0.05
    ]
    for entry, ref in pairs:
        assert abs(entry["end_s"] - ref.end_s) < 1e-6
        # a window skipped on the page is skipped by the direct scan too (same audio, same quality checks)
        assert (entry["score"] is None) == (not np.isfinite(ref.score)), (entry, ref)
    pairs = [(entry, ref) for entry, ref in pairs if entry["score"] is not None]
    assert len(pairs) >= 12
    diffs = np.array([abs(entry["score"] - ref.score) for entry, ref in pairs])
    spread = max(r.score for _, r in pairs) - min(r.score for _, r in pairs)
    assert spread > 3.0, "the file should move the score a lot"
    assert diffs.max() <= SCORE_TOLERANCE, (diffs.round(3).tolist(), spread)
    probs = np.array([abs(entry["probability"] - ref.probability) for entry, ref in pairs])
    assert probs.max() <= PROBABILITY_TOLERANCE, probs.round(3).tolist()
