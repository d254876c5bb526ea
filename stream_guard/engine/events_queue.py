"""A bounded per-stream event queue that sheds the least valuable events first.

A slow consumer must not make a stream's memory grow, but it must still learn the outcome. When the queue is
full the oldest map event goes first (map columns are the bulkiest and the least critical), then the oldest
score event; alerts, errors and the summary are never dropped (they are few: at most one per window or per
stream).
"""

from __future__ import annotations

import asyncio
from collections import deque

from stream_guard.events import Event, MapEvent, ScoreEvent


class EventQueue:
    """FIFO of events with a soft limit; ``close`` marks the end so the consumer's iteration stops."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[Event] = deque()
        self._changed = asyncio.Event()
        self._closed = False
        self.dropped = 0
        self.dropped_by_type: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, event: Event) -> None:
        self._items.append(event)
        if len(self._items) > self.limit:
            self._shed()
        self._changed.set()

    def _shed(self) -> None:
        for kind in (MapEvent, ScoreEvent):
            for i, ev in enumerate(self._items):
                if isinstance(ev, kind):
                    del self._items[i]
                    self.dropped += 1
                    self.dropped_by_type[ev.type] = self.dropped_by_type.get(ev.type, 0) + 1
                    return

    def close(self) -> None:
        self._closed = True
        self._changed.set()

    async def get(self) -> Event | None:
        """The next event, or None once the queue is closed and empty."""
        while not self._items:
            if self._closed:
                return None
            self._changed.clear()
            await self._changed.wait()
        ev = self._items.popleft()
        self._changed.set()
        return ev

    async def wait_below(self, n: int) -> None:
        """Wait until fewer than ``n`` events are queued (backpressure for offline streams)."""
        while len(self._items) >= n and not self._closed:
            self._changed.clear()
            await self._changed.wait()
