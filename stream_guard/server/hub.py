"""Fan-out of events to ``/v1/events`` subscribers, each with a bounded queue.

A slow subscriber must not slow scoring or other subscribers: each has its own queue of at most ``limit``
events; when it is full the oldest event is dropped and counted, and the subscriber is told how many it missed
(``{"type": "dropped", "count": n}``) once it catches up.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from stream_guard.events import Event


@dataclass(eq=False)
class Subscription:
    """One subscriber: the stream ids it wants (empty = all) and its pending events (JSON text)."""

    streams: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    limit: int = 1000
    queue: deque[str] = field(default_factory=deque)
    dropped: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def wants(self, stream: str) -> bool:
        if not self.streams and not self.prefixes:
            return True
        return stream in self.streams or any(stream.startswith(p) for p in self.prefixes)

    def put(self, text: str) -> None:
        if len(self.queue) >= self.limit:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(text)
        self.wake.set()

    async def get(self) -> str | None:
        """Next event JSON; None once the subscription is closed and drained."""
        while not self.queue:
            if self.closed:
                return None
            self.wake.clear()
            await self.wake.wait()
        return self.queue.popleft()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class EventHub:
    """Publishes every event of every stream to matching subscribers."""

    def __init__(self) -> None:
        self.subscriptions: set[Subscription] = set()

    def subscribe(
        self, streams: frozenset[str] = frozenset(), prefixes: tuple[str, ...] = ()
    ) -> Subscription:
        sub = Subscription(streams, prefixes)
        self.subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscriptions.discard(sub)
        sub.close()

    def publish(self, event: Event) -> None:
        if not self.subscriptions:
            return
        text: str | None = None
        for sub in self.subscriptions:
            if sub.wants(event.stream):
                text = text or event.to_json()
                sub.put(text)

    def close(self) -> None:
        for sub in list(self.subscriptions):
            self.unsubscribe(sub)
