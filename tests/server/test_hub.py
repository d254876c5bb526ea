"""The /v1/events fan-out: filters, and a slow subscriber losing its oldest events, counted."""

from __future__ import annotations

import asyncio

from stream_guard.events import ScoreEvent
from stream_guard.server.hub import EventHub


def test_filters_and_bounded_queue():
    async def main():
        hub = EventHub()
        everything = hub.subscribe()
        one = hub.subscribe(frozenset({"a"}))
        prefixed = hub.subscribe(prefixes=("call-7/",))
        everything.limit = 3
        for i in range(5):
            hub.publish(ScoreEvent("a", window_index=i))
        hub.publish(ScoreEvent("call-7/inbound"))
        got = [await everything.get() for _ in range(3)]
        hub.close()
        rest = await everything.get()
        return got, rest, everything.dropped, len(one.queue), len(prefixed.queue)

    got, rest, dropped, n_one, n_prefixed = asyncio.run(main())
    assert dropped == 3  # 6 events into a queue of 3: the oldest went
    assert [e.count('"window_index":') for e in got] == [1, 1, 1]
    assert '"window_index":3' in got[0] and "call-7/inbound" in got[-1]
    assert rest is None  # closed and drained
    assert n_one == 5 and n_prefixed == 1
