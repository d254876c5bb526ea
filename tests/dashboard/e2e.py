"""The dashboard end to end: ``stream-guard serve`` in-process, headless Chromium playing a WAV file as its
microphone, the page's "Test with my microphone" button, and what the page shows.

Shared by ``tests/dashboard/test_dashboard_browser.py`` and ``benchmarks/webrtc_latency.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from chromium import Chromium
from loopback_server import loopback_server

from stream_guard.server import StreamGuardServer

TOKEN = "dashboard-test-token"
RATE = 48000

# Runs in the page before the button is pressed: taps the microphone stream with Web Audio and records the
# wall-clock time (ms since the epoch) at which each loud onset was captured. 256-sample blocks at 48 kHz put
# the onset within ~5 ms; the block's end is when the callback runs, so the onset time is the callback time
# minus the samples after the onset.
ONSET_PROBE = """
(() => {
  window.__onsets = [];
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await original(constraints);
    const ctx = new AudioContext({ sampleRate: 48000 });
    const source = ctx.createMediaStreamSource(stream);
    const tap = ctx.createScriptProcessor(256, 1, 1);
    const mute = ctx.createGain();
    mute.gain.value = 0;
    let loud = false;
    let quietRun = 0;
    tap.onaudioprocess = (e) => {
      const now = performance.timeOrigin + performance.now();
      const x = e.inputBuffer.getChannelData(0);
      for (let i = 0; i < x.length; i++) {
        const a = Math.abs(x[i]);
        if (!loud && a > 0.2) {
          loud = true;
          quietRun = 0;
          window.__onsets.push(now - ((x.length - i) / ctx.sampleRate) * 1000);
        } else if (loud) {
          quietRun = a < 0.01 ? quietRun + 1 : 0;
          if (quietRun > 4800) loud = false;          // 100 ms of silence re-arms the detector
        }
      }
    };
    source.connect(tap);
    tap.connect(mute);
    mute.connect(ctx.destination);
    await ctx.resume();
    return stream;
  };
})();
"""


def alternating_noise(
    segments: int = 4, seg_s: float = 2.0, lead_s: float = 1.0, tail_s: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Silence, then noise that alternates quiet (0.05 RMS) and loud (0.5 RMS) segments, then silence.

    The test bundle scores by level, so the page's score curve, verdicts and alert move with the segments.
    Chromium drops the first ~0.25 s of a fake-capture file, hence the silent lead.
    """
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(lead_s * RATE))]
    for k in range(segments):
        level = 0.5 if k % 2 else 0.05
        parts.append(rng.standard_normal(int(seg_s * RATE)) * level)
    parts.append(np.zeros(int(tail_s * RATE)))
    return np.clip(np.concatenate(parts), -0.99, 0.99).astype(np.float32)


def bursts(
    count: int = 10, on_s: float = 1.0, off_s: float = 1.0, lead_s: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Silence, then ``count`` loud noise bursts separated by silence: sharp onsets to time the audio by."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(lead_s * RATE))]
    for _ in range(count):
        parts.append(np.clip(rng.standard_normal(int(on_s * RATE)) * 0.5, -0.99, 0.99))
        parts.append(np.zeros(int(off_s * RATE)))
    return np.concatenate(parts).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray) -> Path:
    """16-bit PCM WAV at 48 kHz: the only kind Chromium's fake capture reads."""
    sf.write(path, audio, RATE, subtype="PCM_16")
    return path


@contextlib.asynccontextmanager
async def serving(bundle: Path, tmp_path: Path, **overrides: Any) -> AsyncIterator[StreamGuardServer]:
    """``stream-guard serve`` on 127.0.0.1 (free port) with the given bundle and a token."""
    async with loopback_server(bundle, tmp_path, TOKEN, **overrides) as server:
        yield server


@dataclass
class PageRun:
    """What one microphone session produced, on the page and on the server."""

    stream: str
    cards: list[dict[str, Any]]
    score_log: list[dict[str, Any]]
    heatmap: dict[str, Any]
    received: np.ndarray  # int16 PCM the server fed to the engine (16 kHz)
    arrivals: list[tuple[int, float]] = field(default_factory=list)  # (sample offset, epoch s) per chunk
    onsets_ms: list[float] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    dom_text: dict[str, str] = field(default_factory=dict)


HEATMAP_STATS = """
(() => {
  const cv = document.querySelector('.stream[data-mine="true"] canvas.heatmap');
  const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
  const colours = new Set();
  let lit = 0;
  for (let i = 0; i < d.length; i += 4) {
    colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    if (d[i] + d[i + 1] + d[i + 2] > 120) lit++;
  }
  return { colours: colours.size, lit: lit / (d.length / 4), width: cv.width, height: cv.height };
})()
"""


async def microphone_session(
    server: StreamGuardServer,
    wav: Path,
    *,
    seconds: float,
    screenshot: Path | None = None,
    probe: bool = False,
    timeout_s: float = 120.0,
) -> PageRun:
    """Open the dashboard, press "Test with my microphone", stream ``seconds`` of the file, stop, collect."""
    chunks: list[np.ndarray] = []
    arrivals: list[tuple[int, float]] = []
    received = [0]

    def on_pcm(_stream: str, pcm: np.ndarray, at: float) -> None:
        arrivals.append((received[0], at))
        received[0] += len(pcm)
        chunks.append(pcm.copy())

    server.webrtc.on_pcm = on_pcm
    async with Chromium(audio_file=wav) as browser:
        try:
            await browser.goto(f"http://127.0.0.1:{server.port}/?token={TOKEN}")
            await browser.wait_for("document.getElementById('connection').dataset.state === 'open'", 20)
            if probe:
                await browser.evaluate(ONSET_PROBE)
            await browser.evaluate("document.getElementById('mic-button').click()")
            await browser.wait_for("!!document.querySelector('.stream[data-mine=\"true\"]')", 30)
            deadline = time.monotonic() + timeout_s
            while received[0] < seconds * 16000:
                if time.monotonic() > deadline:
                    got = received[0] / 16000
                    raise TimeoutError(f"only {got:.1f} s of audio arrived; console: {browser.console}")
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # let the last windows reach the page
            await browser.evaluate("document.getElementById('mic-button').click()")  # stop: summary follows
            mine = "document.querySelector('.stream[data-mine=\"true\"]')"
            await browser.wait_for(f"{mine}.dataset.ended === 'true'", 30)
            stream = await browser.evaluate(f"{mine}.dataset.stream")
            cards = await browser.evaluate(
                "[...document.querySelectorAll('.stream')].map((n) => ({...n.dataset}))"
            )
            log = await browser.evaluate(f"window.streamGuard.streams.get({stream!r}).scoreLog")
            heat = await browser.evaluate(HEATMAP_STATS)
            dom_text = await browser.evaluate(
                "(() => { const n = document.querySelector('.stream[data-mine=\"true\"]'); const o = {};"
                " for (const k of ['label', 'verdict', 'score', 'prob', 'windows', 'ended']) "
                "o[k] = n.querySelector('.' + k).textContent; return o; })()"
            )
            onsets = await browser.evaluate("window.__onsets || []") if probe else []
            shot = await browser.screenshot(screenshot) if screenshot is not None else None
        finally:
            console = list(browser.console)
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    return PageRun(stream, cards, log, heat, pcm, arrivals, onsets, console, shot, dom_text)


def locate(received: np.ndarray, reference: np.ndarray, search_s: float = 4.0) -> int:
    """Sample offset in ``reference`` where ``received`` starts (both 16 kHz), by cross-correlation."""
    x = received.astype(np.float64)
    y = reference.astype(np.float64)
    n = min(len(x), int((search_s + 6.0) * 16000))
    seg = x[:n]
    size = 1 << int(np.ceil(np.log2(len(y) + n)))
    corr = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(seg, size)), size)
    return int(np.argmax(corr[: len(y)]))
