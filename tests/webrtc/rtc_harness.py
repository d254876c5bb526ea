"""A real WebRTC ingest on loopback for the tests: engine + gateway behind a websockets server.

Everything is the product's own code (onnxruntime engine with the test bundle, aiortc peers, a websockets
server); only the HTTP routing of ``stream-guard serve`` is left out so that these tests run without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from loopback_server import loopback_server
from websockets.asyncio.server import serve

from stream_guard.backends import OnnxRuntimeBackend
from stream_guard.engine import Engine, EngineConfig
from stream_guard.events import Event
from stream_guard.sources.webrtc import WebRTCConfig, WebRTCGateway, engine_opener


@dataclass
class Harness:
    gateway: WebRTCGateway
    url: str
    engine: Engine
    events: list[Event] = field(default_factory=list)
    pcm: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def received(self, stream_id: str) -> np.ndarray:
        """The audio the server fed to ``stream_id``, as float32 at 16 kHz."""
        chunks = self.pcm.get(stream_id, [])
        if not chunks:
            return np.zeros(0, np.float32)
        return np.concatenate(chunks).astype(np.float32) / 32768.0


@contextlib.asynccontextmanager
async def running_gateway(bundle: Path, config: WebRTCConfig | None = None) -> AsyncIterator[Harness]:
    """Serve ``/v1/webrtc`` on 127.0.0.1 (any port) with a real engine; closes everything on exit."""
    backend = OnnxRuntimeBackend(bundle, provider="cpu", threads=1)
    config = config or WebRTCConfig(loopback=True, stall_timeout_s=1.5, connect_timeout_s=10.0)
    async with Engine(backend, EngineConfig(max_wait_ms=5), owns_backend=True) as engine:
        harness = Harness(gateway=None, url="", engine=engine)  # type: ignore[arg-type]

        def on_pcm(stream_id: str, pcm: np.ndarray, _t: float) -> None:
            harness.pcm.setdefault(stream_id, []).append(pcm.copy())

        gateway = WebRTCGateway(engine_opener(engine), config, on_event=harness.events.append, on_pcm=on_pcm)
        harness.gateway = gateway
        async with serve(gateway.handle, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            harness.url = f"ws://127.0.0.1:{port}/v1/webrtc"
            try:
                yield harness
            finally:
                await gateway.aclose()


def noise(seconds: float, rms: float, rate: int = 48000, seed: int = 0) -> np.ndarray:
    """White noise at a given RMS: the test bundle scores loud noise 'synthetic' and quiet noise 'real'."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * rate)) * rms).astype(np.float32)


def open_peer_connections() -> int:
    """aiortc peer connections alive in this process and not closed (client and server side)."""
    from aiortc import RTCPeerConnection

    gc.collect()
    # type() rather than isinstance(): gc also lists dead weak proxies, and isinstance() on one raises.
    alive = [o for o in gc.get_objects() if issubclass(type(o), RTCPeerConnection)]
    return sum(1 for pc in alive if pc.connectionState != "closed")


async def settle(predicate: Any, timeout_s: float = 30.0) -> bool:
    """Wait until ``predicate()`` holds (background cleanup finishing); False if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


def other_tasks() -> int:
    """Tasks on the loop besides the caller's own."""
    current = asyncio.current_task()
    return sum(1 for t in asyncio.all_tasks() if t is not current and not t.done())


def task_names() -> list[str]:
    """What the other tasks are running (for a failure message when some are left behind)."""
    current = asyncio.current_task()
    return sorted(t.get_coro().__qualname__ for t in asyncio.all_tasks() if t is not current and not t.done())


TOKEN = "webrtc-test-token"


@contextlib.asynccontextmanager
async def running_server(bundle: Path, tmp_path: Path, **overrides: Any) -> AsyncIterator[Any]:
    """``stream-guard serve`` itself on 127.0.0.1 (free port), with a token: ``/v1/webrtc`` as deployed."""
    async with loopback_server(bundle, tmp_path, TOKEN, **overrides) as server:
        yield server
