"""Helpers for server tests: test signals and a running server on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from stream_guard.core.formats import AudioFormat, encode
from stream_guard.server import Limits, ServerConfig, StreamGuardServer

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
    # replays run faster than real time: no real-time shedding unless a test asks, so scores are comparable
    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        model=str(bundle),
        provider="cpu",
        threads=1,
        tokens=(TOKEN,),
        outbox_path=str(tmp_path / "outbox.sqlite"),
        # test clients replay calls faster than real time: lift the rate limits unless a test sets them
        limits=limits or Limits(max_messages_per_s=1e6, max_bytes_per_s=1e9),
        shutdown_grace_s=5.0,
        **{"stream_queue_limit": 64, "max_delay_ms": None, **overrides},
    )
    server = StreamGuardServer(config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def url(server: StreamGuardServer, path: str, token: str | None = TOKEN) -> str:
    sep = "&" if "?" in path else "?"
    return f"ws://127.0.0.1:{server.port}{path}" + (f"{sep}token={token}" if token else "")
