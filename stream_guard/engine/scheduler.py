"""Micro-batching of windows across streams, off the event loop, with bounded queues.

Windows wait in one queue per window length (a batch is a ``[B, S]`` array, so only equal lengths mix). When
a worker is free the scheduler takes the group whose oldest window has waited longest, gives it up to
``max_wait_ms`` from that window's arrival to fill up to ``max_batch``, and runs ``backend.infer`` in a worker
thread (onnxruntime releases the GIL) while the loop keeps accepting audio. Forming the batch only when a
worker is free means batches grow by themselves under load, where they pay off.

Every queue is bounded. A real-time stream that has ``stream_queue_limit`` windows waiting loses its stalest
one (a live monitor wants the newest audio judged, not a backlog), and when the whole queue holds
``queue_limit`` windows the stalest real-time window of any stream goes; each drop is reported to the window's
owner and counted. A real-time window that waited longer than ``max_delay_ms`` is dropped too, so under
sustained overload latency stays bounded and the loss shows up as counted drops. Offline streams (files) are
never dropped: their ``feed`` waits for room instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from stream_guard.backends.base import InferenceBackend, check_outputs
from stream_guard.core.stream import Window

log = logging.getLogger("stream_guard.engine")


@dataclass(frozen=True)
class EngineConfig:
    """Scheduling limits shared by all streams of an engine.

    ``max_batch`` windows per backend call; ``max_wait_ms`` the longest a window waits for a fuller batch;
    ``queue_limit`` windows waiting in total and ``stream_queue_limit`` per stream; ``max_delay_ms`` the age
    (from a window's last sample) beyond which a real-time window is dropped instead of scored: a verdict
    seconds late is worth less than keeping up with the live audio (None = never drop for age);
    ``workers`` concurrent backend calls (1 suits a CPU backend that already uses every core; more can help a
    GPU); ``latency_samples`` the number of recent latencies kept for percentiles.
    """

    max_batch: int = 32
    max_wait_ms: float = 10.0
    queue_limit: int = 4096
    stream_queue_limit: int = 8
    max_delay_ms: float | None = 2000.0
    workers: int = 1
    latency_samples: int = 20000

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.workers < 1 or self.queue_limit < 1 or self.stream_queue_limit < 1:
            raise ValueError("max_batch, workers, queue_limit and stream_queue_limit must be >= 1")
        if self.max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        if self.max_delay_ms is not None and self.max_delay_ms <= self.max_wait_ms:
            raise ValueError("max_delay_ms must exceed max_wait_ms")


class WindowOwner(Protocol):
    """Receives the fate of the windows it submitted (implemented by the engine's per-channel handles)."""

    realtime: bool

    def deliver_result(self, window: Window, score: float, amap: np.ndarray, latency_ms: float) -> None: ...

    def deliver_dropped(self, window: Window) -> None: ...

    def deliver_failed(self, window: Window, message: str) -> None: ...


@dataclass(eq=False)
class _Item:
    window: Window
    owner: WindowOwner
    enqueued_at: float
    seq: int
    state: str = "queued"  # queued | taken (in a batch) | done (result or failure delivered) | dropped


@dataclass
class SchedulerStats:
    """Counters for metrics and benchmarks; latencies are ms from a window's last sample to its result."""

    windows_scored: int = 0
    windows_dropped: int = 0
    windows_failed: int = 0
    windows_skipped: int = 0  # abstaining windows resolved without inference (never queued here)
    batches: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    inference_ms_total: float = 0.0
    latencies_ms: deque[float] = field(default_factory=deque)


class Scheduler:
    """Owns the window queues and the worker threads; all methods are called on the event loop."""

    def __init__(
        self, backend: InferenceBackend, config: EngineConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.backend = backend
        self.config = config
        self._clock = clock
        self._groups: dict[int, deque[_Item]] = {}
        self._group_live: Counter[int] = Counter()  # queued (not dropped or taken) windows per length
        self._per_owner: dict[int, deque[_Item]] = {}
        self._owner_count: Counter[int] = Counter()
        self._queued = 0
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._space = asyncio.Condition()
        self._workers = asyncio.Semaphore(config.workers)
        self._executor = ThreadPoolExecutor(
            max_workers=config.workers, thread_name_prefix="stream-guard-infer"
        )
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._closed = False
        self.stats = SchedulerStats(latencies_ms=deque(maxlen=config.latency_samples))

    # --- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="stream-guard-scheduler")

    async def close(self) -> None:
        """Stop batching; windows still queued are dropped (and reported), running batches finish."""
        self._closed = True
        self._wakeup.set()
        await self._notify_space()  # offline feeders waiting for room: their windows will be dropped now
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        for group in self._groups.values():
            while group:
                item = group.popleft()
                if item.state == "queued":
                    self._drop(item)
        self._executor.shutdown(wait=True)

    # --- queueing -----------------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return self._queued

    def has_room(self, owner: WindowOwner) -> bool:
        return (
            self._queued < self.config.queue_limit
            and self._owner_count[id(owner)] < self.config.stream_queue_limit
        )

    async def wait_for_room(self, owner: WindowOwner) -> None:
        """Backpressure for offline streams: return once ``owner`` may queue another window."""
        async with self._space:
            await self._space.wait_for(lambda: self._closed or self.has_room(owner))

    def count_skipped(self) -> None:
        """A stream resolved an abstaining window itself, without inference: counted with the others."""
        self.stats.windows_skipped += 1

    def submit(self, window: Window, owner: WindowOwner) -> None:
        """Queue a window; for a real-time owner this may drop stale windows (reported via their owners)."""
        if self._closed:
            owner.deliver_dropped(window)
            return
        key = id(owner)
        if owner.realtime and self._owner_count[key] >= self.config.stream_queue_limit:
            self._drop_oldest_of(key)
        if self._queued >= self.config.queue_limit:
            self._drop_stalest_realtime()
        item = _Item(window, owner, self._clock(), next(self._seq))
        self._groups.setdefault(window.length, deque()).append(item)
        self._group_live[window.length] += 1
        self._per_owner.setdefault(key, deque()).append(item)
        self._owner_count[key] += 1
        self._queued += 1
        self._wakeup.set()

    def _drop(self, item: _Item) -> None:
        item.state = "dropped"
        self._group_live[item.window.length] -= 1
        key = id(item.owner)
        self._owner_count[key] -= 1
        if self._owner_count[key] <= 0:
            del self._owner_count[key]
            self._per_owner.pop(key, None)
        self._queued -= 1
        self.stats.windows_dropped += 1
        item.owner.deliver_dropped(item.window)

    def _drop_oldest_of(self, key: int) -> None:
        q = self._per_owner.get(key)
        while q:
            item = q.popleft()
            if item.state == "queued":
                self._drop(item)
                return

    def _drop_stalest_realtime(self) -> None:
        stalest: _Item | None = None
        for q in self._per_owner.values():
            for item in q:
                if item.state == "queued" and item.owner.realtime:
                    if stalest is None or item.window.ready_at < stalest.window.ready_at:
                        stalest = item
                    break
        if stalest is not None:
            self._drop(stalest)

    def _take(self, group: deque[_Item], n: int) -> list[_Item]:
        batch: list[_Item] = []
        max_delay = self.config.max_delay_ms
        oldest_ok = self._clock() - max_delay / 1000.0 if max_delay is not None else None
        while group and len(batch) < n:
            item = group.popleft()
            if item.state != "queued":
                continue
            if oldest_ok is not None and item.owner.realtime and item.window.ready_at < oldest_ok:
                self._drop(item)  # too old to matter for a live stream
                continue
            item.state = "taken"
            self._group_live[item.window.length] -= 1
            key = id(item.owner)
            self._owner_count[key] -= 1
            if self._owner_count[key] <= 0:
                del self._owner_count[key]
                self._per_owner.pop(key, None)
            else:
                q = self._per_owner.get(key)
                while q and q[0].state != "queued":
                    q.popleft()
            self._queued -= 1
            batch.append(item)
        return batch

    @staticmethod
    def _head(group: deque[_Item]) -> _Item | None:
        while group and group[0].state != "queued":
            group.popleft()
        return group[0] if group else None

    def _live(self, length: int) -> int:
        return self._group_live[length]

    # --- batching loop ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        max_wait = self.config.max_wait_ms / 1000.0
        while not self._closed:
            await self._workers.acquire()
            try:
                group = None
                while group is None:
                    heads = [
                        (h.enqueued_at, h.seq, length)
                        for length, g in self._groups.items()
                        if (h := self._head(g)) is not None
                    ]
                    if heads:
                        length = min(heads)[2]
                        group = self._groups[length]
                        break
                    self._wakeup.clear()
                    await self._wakeup.wait()
                head = self._head(group)
                assert head is not None
                deadline = head.enqueued_at + max_wait
                while self._live(length) < self.config.max_batch:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        break
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), remaining)
                    except asyncio.TimeoutError:
                        break
                batch = self._take(group, self.config.max_batch)
            except asyncio.CancelledError:
                self._workers.release()
                raise
            except Exception:  # a bug here must not silently stop scoring for every stream
                log.exception("scheduler: unexpected error while forming a batch")
                self._workers.release()
                await asyncio.sleep(0.01)
                continue
            await self._notify_space()
            if not batch:
                self._workers.release()
                continue
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _notify_space(self) -> None:
        async with self._space:
            self._space.notify_all()

    async def _infer(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        loop = asyncio.get_running_loop()
        scores, maps = await loop.run_in_executor(self._executor, self.backend.infer, audio)
        # any backend, not only ours: a wrong output shape becomes a failed window, never a stuck stream
        return check_outputs(audio.shape[0], scores, maps, type(self.backend).__name__)

    async def _execute(self, batch: list[_Item]) -> None:
        try:
            audio = np.stack([item.window.samples for item in batch])
            t0 = self._clock()
            try:
                scores, maps = await self._infer(audio)
            except Exception as exc:
                if len(batch) == 1:
                    self._fail(batch[0], exc)
                    return
                # isolate the window that broke the batch so the other streams still get their scores
                for item in batch:
                    try:
                        s, m = await self._infer(item.window.samples[None, :])
                    except Exception as exc1:
                        self._fail(item, exc1)
                    else:
                        self._deliver([item], s, m, self._clock() - t0)
                return
            self._deliver(batch, scores, maps, self._clock() - t0)
        except Exception as exc:  # a bug must cost these windows, never leave their streams waiting forever
            log.exception("scheduler: unexpected error while running a batch")
            for item in batch:
                if item.state == "taken":
                    self._fail(item, exc)
        finally:
            self._workers.release()

    def _fail(self, item: _Item, exc: BaseException) -> None:
        item.state = "done"
        self.stats.windows_failed += 1
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        item.owner.deliver_failed(item.window, f"inference failed for window {item.window.index}: {text}")

    def _deliver(self, batch: list[_Item], scores: np.ndarray, maps: np.ndarray, seconds: float) -> None:
        now = self._clock()
        self.stats.batches += 1
        self.stats.batch_sizes[len(batch)] += 1
        self.stats.inference_ms_total += seconds * 1000.0
        for i, item in enumerate(batch):
            if not np.isfinite(scores[i]):
                self._fail(item, ValueError(f"the model returned a non-finite score ({scores[i]})"))
                continue
            item.state = "done"
            latency = (now - item.window.ready_at) * 1000.0
            self.stats.windows_scored += 1
            self.stats.latencies_ms.append(latency)
            item.owner.deliver_result(item.window, float(scores[i]), maps[i], latency)

    def snapshot(self) -> dict[str, Any]:
        """Counters and latency percentiles (ms) as a plain dict for metrics and benchmark reports."""
        lat = np.asarray(self.stats.latencies_ms, dtype=np.float64)
        pct = {f"p{q}": (float(np.percentile(lat, q)) if lat.size else None) for q in (50, 95, 99)}
        sizes = self.stats.batch_sizes
        n = sum(sizes.values())
        return {
            "windows_scored": self.stats.windows_scored,
            "windows_dropped": self.stats.windows_dropped,
            "windows_failed": self.stats.windows_failed,
            "windows_skipped": self.stats.windows_skipped,
            "windows_queued": self._queued,
            "batches": self.stats.batches,
            "batch_size_mean": (sum(k * v for k, v in sizes.items()) / n) if n else None,
            "batch_size_max": max(sizes) if sizes else None,
            "batch_sizes": dict(sorted(sizes.items())),
            "inference_ms_total": self.stats.inference_ms_total,
            "latency_ms": {**pct, "max": float(lat.max()) if lat.size else None, "count": int(lat.size)},
        }
