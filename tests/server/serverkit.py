"""Helpers for server tests: test signals and a running server on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from loopback_server import loopback_server

from stream_guard.core.formats import AudioFormat, encode
from stream_guard.server import Limits, StreamGuardServer

TOKEN = "test-token"


def noise(seconds: float, level: float, rate: int = 8000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * rate)) * level).clip(-0.99, 0.99).astype(np.float32)


def mulaw(x: np.ndarray) -> bytes:
    return encode(x, AudioFormat(8000, "mulaw"))


def pcm16(x: np.ndarray) -> bytes:
    return (x * 32767).astype("<i2").tobytes()


@contextlib.asynccontextmanager
async def running(bundle: Path, tmp_path: Path, limits: Limits | None = None, **overrides) -> AsyncIterator:
    # replays run faster than real time: no real-time shedding unless a test asks, so scores are comparable;
    # test clients replay calls faster than real time: lift the rate limits unless a test sets them
    settings = {"stream_queue_limit": 64, "max_delay_ms": None, **overrides}
    limits = limits or Limits(max_messages_per_s=1e6, max_bytes_per_s=1e9)
    async with loopback_server(bundle, tmp_path, TOKEN, limits=limits, **settings) as server:
        yield server


def url(server: StreamGuardServer, path: str, token: str | None = TOKEN) -> str:
    sep = "&" if "?" in path else "?"
    return f"ws://127.0.0.1:{server.port}{path}" + (f"{sep}token={token}" if token else "")
