"""The engine: many concurrent streams, one backend, one scheduler.

The engine is an async context manager. It owns the :class:`Scheduler` (and through it the inference threads)
and, when built with :meth:`Engine.from_bundle`, the backend. Streams are opened with
:meth:`Engine.open_stream`; closing the engine closes the streams still open, so every stream still gets its
summary.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from stream_guard.backends.base import InferenceBackend
from stream_guard.bundle import BundleMetadata
from stream_guard.core.formats import AudioData, AudioFormat
from stream_guard.core.stream import StreamConfig, channel_stream_ids, make_stream_states
from stream_guard.engine.scheduler import EngineConfig, Scheduler
from stream_guard.engine.stream import Stream
from stream_guard.events import Event


class Engine:
    """Scores any number of streams with one backend; see docs/architecture.md for the contract."""

    def __init__(
        self,
        backend: InferenceBackend,
        config: EngineConfig | None = None,
        *,
        owns_backend: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.config = config or EngineConfig()
        self._owns_backend = owns_backend
        self._clock = clock
        self._scheduler: Scheduler | None = None
        self._streams: dict[str, Stream] = {}
        self._stream_ids: set[str] = set()
        self._closed = False
        self.streams_opened = 0
        self.streams_closed = 0

    @classmethod
    def from_bundle(
        cls,
        model: str | Path | None = None,
        *,
        provider: str = "auto",
        threads: int | None = None,
        config: EngineConfig | None = None,
    ) -> Engine:
        """An engine running ``model`` (a bundle path; None = the embedded default) with onnxruntime."""
        from stream_guard.backends import load_backend

        return cls(load_backend(model, provider=provider, threads=threads), config, owns_backend=True)

    @property
    def metadata(self) -> BundleMetadata:
        return self.backend.metadata

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._closed:
            raise RuntimeError("engine is closed")
        if self._scheduler is None:
            self._scheduler = Scheduler(self.backend, self.config, self._clock)
            self._scheduler.start()

    async def open_stream(
        self, stream_id: str, fmt: AudioFormat, config: StreamConfig | None = None
    ) -> Stream:
        """Start a stream; ``stream_id`` must be unique among the engine's open streams."""
        await self.start()
        assert self._scheduler is not None
        config = config or StreamConfig()
        if not isinstance(stream_id, str) or not stream_id:
            raise ValueError("stream_id must be a non-empty string")
        ids = [stream_id]
        if config.split_channels and fmt.channels > 1:
            ids += channel_stream_ids(stream_id, fmt, config)
        taken = [i for i in ids if i in self._stream_ids]
        if taken:
            raise ValueError(f"stream id {taken[0]!r} is already open")
        states = make_stream_states(stream_id, self.metadata, fmt, config, clock=self._clock)
        stream = Stream(stream_id, fmt, config, states, self._scheduler, self._forget)
        self._streams[stream_id] = stream
        self._stream_ids.update(ids)
        self.streams_opened += 1
        return stream

    def _forget(self, stream: Stream) -> None:
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]
            self._stream_ids.difference_update([stream.id, *stream.ids])
            self.streams_closed += 1

    @property
    def open_streams(self) -> list[Stream]:
        return list(self._streams.values())

    def stats(self) -> dict[str, Any]:
        """Counters for metrics and benchmarks (windows scored / dropped, batch sizes, latency
        percentiles)."""
        base = self._scheduler.snapshot() if self._scheduler is not None else {}
        return {
            **base,
            "streams_open": len(self._streams),
            "streams_opened": self.streams_opened,
            "streams_closed": self.streams_closed,
        }

    async def close(self) -> None:
        """Close every open stream (each gets its summary), stop the scheduler, release an owned backend."""
        if self._closed:
            return
        open_streams = list(self._streams.values())
        if open_streams:
            await asyncio.gather(*(s.close() for s in open_streams), return_exceptions=True)
        self._closed = True
        if self._scheduler is not None:
            await self._scheduler.close()
        if self._owns_backend:
            self.backend.close()

    async def scan(
        self, data: AudioData, fmt: AudioFormat, stream_id: str = "audio", config: StreamConfig | None = None
    ) -> list[Event]:
        """Score a whole recording as an offline stream (nothing dropped); returns all its events in order."""
        cfg = dataclasses.replace(config or StreamConfig(), realtime=False)
        stream = await self.open_stream(stream_id, fmt, cfg)
        events: list[Event] = []

        async def consume() -> None:
            async for ev in stream.events():
                events.append(ev)

        consumer = asyncio.get_running_loop().create_task(consume())
        try:
            await stream.feed(data)
        finally:
            await stream.close()
            await consumer
        return events


def scan_array(
    samples: np.ndarray,
    sample_rate: int,
    model: str | Path | None = None,
    *,
    config: StreamConfig | None = None,
    provider: str = "auto",
    threads: int | None = None,
) -> list[Event]:
    """Synchronous convenience: score a float array ``[frames]`` or ``[frames, channels]`` with a bundle."""
    x = np.asarray(samples, dtype=np.float32)
    fmt = AudioFormat(sample_rate, "float32", 1 if x.ndim == 1 else x.shape[1])

    async def run() -> list[Event]:
        async with Engine.from_bundle(model, provider=provider, threads=threads) as engine:
            return await engine.scan(x, fmt, config=config)

    return asyncio.run(run())
