"""The asyncio handle an integrator holds for one stream: feed audio, iterate events, close.

All audio processing happens in the sans-I/O :class:`~stream_guard.core.stream.StreamState` (one per channel
in per-channel mode); this module only moves windows to the scheduler and events to the consumer, and turns
user errors into :class:`~stream_guard.events.ErrorEvent` so one bad stream never affects the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import numpy as np

from stream_guard.core.formats import AudioData, AudioFormat, AudioFormatError
from stream_guard.core.stream import (
    StreamClosedError,
    StreamConfig,
    StreamState,
    Window,
    combine_summaries,
)
from stream_guard.events import ErrorEvent, Event, SummaryEvent

if TYPE_CHECKING:
    from stream_guard.engine.scheduler import Scheduler

# Events a single window can produce (score, alert, map, error); used to size offline backpressure.
_EVENTS_PER_WINDOW = 4


class _Channel:
    """Ties one StreamState to the scheduler (the scheduler's ``WindowOwner``)."""

    def __init__(self, stream: Stream, state: StreamState) -> None:
        self.stream = stream
        self.state = state
        self.realtime = stream.config.realtime

    def deliver_result(self, window: Window, score: float, amap: np.ndarray, latency_ms: float) -> None:
        self.stream._emit_from(self, lambda: self.state.on_result(window, score, amap, latency_ms))

    def deliver_dropped(self, window: Window) -> None:
        self.stream._emit_from(self, lambda: self.state.on_dropped(window))

    def deliver_skipped(self, window: Window) -> None:
        self.stream._emit_from(self, lambda: self.state.on_skipped(window))

    def deliver_failed(self, window: Window, message: str) -> None:
        self.stream._emit_from(self, lambda: self.state.on_failed(window, message))


class Stream:
    """One audio stream inside an :class:`~stream_guard.engine.Engine`.

    ``feed`` accepts chunks of any size in the stream's :class:`AudioFormat` and returns as soon as the
    windows they complete are queued (real-time streams never wait for inference; offline streams wait for
    queue room).
    ``events()`` yields score, map, alert and error events and ends with the :class:`SummaryEvent`. ``close``
    ends the audio, waits for the last results and returns the summary; calling it again returns the same one.
    """

    def __init__(
        self,
        stream_id: str,
        fmt: AudioFormat,
        config: StreamConfig,
        states: list[StreamState],
        scheduler: Scheduler,
        on_closed: Callable[[Stream], None],
    ) -> None:
        from stream_guard.engine.events_queue import EventQueue

        self.id = stream_id
        self.format = fmt
        self.config = config
        self._scheduler = scheduler
        self._channels = [_Channel(self, s) for s in states]
        self._queue = EventQueue(config.event_queue_limit)
        self._on_closed = on_closed
        self._idle = asyncio.Event()
        self._idle.set()
        self._close_task: asyncio.Task[SummaryEvent] | None = None
        self._consumer_attached = False
        self.summary: SummaryEvent | None = None
        self.errors = 0

    # --- introspection ------------------------------------------------------------------------------------

    @property
    def ids(self) -> list[str]:
        """The stream ids that appear in events: ``[id]``, or one per channel in per-channel mode."""
        return [c.state.stream_id for c in self._channels]

    @property
    def closed(self) -> bool:
        return self._close_task is not None

    @property
    def events_dropped(self) -> int:
        return self._queue.dropped

    @property
    def windows_cut(self) -> int:
        return sum(c.state.windows_cut for c in self._channels)

    @property
    def windows_dropped(self) -> int:
        return sum(c.state.dropped for c in self._channels)

    @property
    def windows_skipped(self) -> int:
        """Abstaining windows reported without inference (``StreamConfig.skip_abstaining``)."""
        return sum(c.state.skipped for c in self._channels)

    # --- audio in -----------------------------------------------------------------------------------------

    async def feed(self, data: AudioData) -> bool:
        """Queue a chunk of audio. Returns False if the chunk was rejected (an ErrorEvent says why).

        A rejected chunk is discarded whole. Raises :class:`StreamClosedError` when the stream was already
        closed: that is a bug in the caller, not bad audio.
        """
        if self._close_task is not None:
            raise StreamClosedError(f"stream {self.id!r} is closed; it accepts no more audio")
        try:
            cutters = [(ch, ch.state.feed_iter(data)) for ch in self._channels]
        except AudioFormatError as exc:
            self.errors += 1
            fatal = self.config.close_on_error
            message = str(exc).replace(f"stream {self._channels[0].state.stream_id!r}: ", "")
            self._queue.put(ErrorEvent(self.id, code="invalid_audio", message=message, fatal=fatal))
            if fatal:
                await self.close()
            return False
        for ch, windows in cutters:
            for n, window in enumerate(windows, 1):
                await self._submit([(ch, window)])
                if n % 4 == 0:
                    await asyncio.sleep(0)  # a long recording fed at once must not hold up the other streams
        return True

    async def _submit(self, windows: list[tuple[_Channel, Window]]) -> None:
        done = 0
        try:
            for ch, w in windows:
                if not self.config.realtime:
                    if not w.skip:
                        await self._scheduler.wait_for_room(ch)
                    if self._consumer_attached:
                        outstanding = sum(c.state.outstanding for c in self._channels)
                        room = self._queue.limit - _EVENTS_PER_WINDOW * (outstanding + 1)
                        await self._queue.wait_below(max(1, room))
                if w.skip:
                    # abstaining (silence, clipping): its score could never count, so no inference; its
                    # event still comes in window order, after any earlier window still being scored
                    self._scheduler.count_skipped()
                    done += 1
                    ch.deliver_skipped(w)
                    continue
                self._idle.clear()
                self._scheduler.submit(w, ch)
                done += 1
        finally:
            # cancelled while waiting for room: the windows never queued count as dropped, so close() still
            # finds every window resolved instead of waiting for results that will never come
            for ch, w in windows[done:]:
                ch.deliver_dropped(w)

    # --- results in ---------------------------------------------------------------------------------------

    def _emit_from(self, ch: _Channel, produce: Callable[[], list[Event]]) -> None:
        try:
            events = produce()
        except Exception as exc:  # a bug must cost one stream, never the scheduler
            events = [
                ErrorEvent(
                    ch.state.stream_id, code="internal", message=f"{type(exc).__name__}: {exc}", fatal=False
                )
            ]
        for ev in events:
            self._queue.put(ev)
        if all(c.state.outstanding == 0 for c in self._channels):
            self._idle.set()

    # --- events out ---------------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """Yield events as they come; the last one is the stream's :class:`SummaryEvent`.

        Meant for one consumer (run it as a task beside the feeding code). Until the stream is closed it waits
        for more events; events that a slow consumer let pile up beyond ``event_queue_limit`` are shed (maps
        first, then scores; never alerts, errors or the summary) and counted in :attr:`events_dropped`.
        """
        self._consumer_attached = True
        try:
            while True:
                ev = await self._queue.get()
                if ev is None:
                    return
                yield ev
        finally:
            self._consumer_attached = False

    # --- end ----------------------------------------------------------------------------------------------

    async def close(self) -> SummaryEvent:
        """End of audio: score the tail, wait for every result, emit and return the summary. Idempotent."""
        if self._close_task is None:
            self._close_task = asyncio.get_running_loop().create_task(self._finish())
        return await asyncio.shield(self._close_task)

    async def _finish(self) -> SummaryEvent:
        try:
            tail: list[tuple[_Channel, Window]] = []
            for ch in self._channels:
                tail.extend((ch, w) for w in ch.state.finish())
            await self._submit(tail)
            # a feed() running concurrently may still be queueing windows it cut: wait for every one
            while any(c.state.outstanding for c in self._channels):
                self._idle.clear()
                await self._idle.wait()
            summaries = []
            for ch in self._channels:
                for ev in ch.state.flush():
                    self._queue.put(ev)
                s = ch.state.summary()
                summaries.append(s)
                if len(self._channels) > 1:
                    self._queue.put(s)
            summary = summaries[0] if len(summaries) == 1 else combine_summaries(self.id, summaries)
            self.summary = summary
            self._queue.put(summary)
            return summary
        finally:
            self._queue.close()
            self._on_closed(self)
