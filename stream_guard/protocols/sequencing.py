"""Sequence-number bookkeeping shared by the JSON media-stream protocols.

Twilio, Exotel and Plivo deliver messages over one TCP connection in order, so a sequence number only needs
checking: a gap is counted (audio was lost upstream), a repeat is dropped. Telnyx states that "media frame
order is not guaranteed", so :class:`Reorderer` holds a few messages back and releases them in sequence
order, skipping a missing number once enough later messages have arrived that waiting longer would only add
latency.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

from stream_guard.protocols.base import CLOSE_INVALID_PAYLOAD, Notice, Reject


@dataclass
class SequenceChecker:
    """In-order delivery check: returns notices for gaps, and whether the message is a repeat to drop.

    ``max_jump`` bounds how far ahead a sequence number may leap (a corrupt or hostile counter would otherwise
    make every later message look like a repeat); beyond it the connection is rejected.
    """

    max_jump: int = 30_000
    last: int | None = None
    gaps: int = 0
    repeats: int = 0

    def check(self, seq: int) -> tuple[bool, list[Notice]]:
        if self.last is None:
            self.last = seq
            return True, []
        if seq <= self.last:
            self.repeats += 1
            return False, [Notice("sequence_repeat", f"sequence number {seq} after {self.last}")]
        if seq - self.last > self.max_jump:
            raise Reject(CLOSE_INVALID_PAYLOAD, f"sequence number jumped from {self.last} to {seq}")
        notices = []
        if seq != self.last + 1:
            self.gaps += seq - self.last - 1
            notices.append(Notice("sequence_gap", f"{seq - self.last - 1} message(s) missing before {seq}"))
        self.last = seq
        return True, notices


@dataclass
class Reorderer:
    """Releases messages in sequence-number order from an out-of-order arrival stream.

    ``depth`` is how many messages may wait behind a missing one (10 x 20 ms frames = 200 ms of added
    latency at most); when more are waiting, the missing number is declared lost and skipped. ``first`` is
    the first sequence number expected (the platforms count from 1).
    """

    depth: int = 10
    first: int = 1
    max_jump: int = 30_000
    next_seq: int = field(init=False)
    _heap: list[tuple[int, int, Any]] = field(init=False, default_factory=list)
    _tiebreak: int = field(init=False, default=0)
    lost: int = field(init=False, default=0)
    late: int = field(init=False, default=0)
    reordered: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.next_seq = self.first

    def push(self, seq: int, item: Any) -> tuple[list[Any], list[Notice]]:
        """Add one message; return the messages now releasable in order, and notices."""
        if seq < self.next_seq or any(s == seq for s, _, _ in self._heap):
            self.late += 1
            return [], [
                Notice("sequence_late", f"message {seq} arrived after its slot (expected {self.next_seq})")
            ]
        if seq - self.next_seq > self.max_jump:
            raise Reject(CLOSE_INVALID_PAYLOAD, f"sequence number jumped from {self.next_seq} to {seq}")
        if seq != self.next_seq:
            self.reordered += 1
        self._tiebreak += 1
        heapq.heappush(self._heap, (seq, self._tiebreak, item))
        return self._release(force=False)

    def flush(self) -> tuple[list[Any], list[Notice]]:
        """Release everything still held, in order (end of stream)."""
        return self._release(force=True)

    def _release(self, force: bool) -> tuple[list[Any], list[Notice]]:
        out: list[Any] = []
        notices: list[Notice] = []
        while self._heap:
            seq = self._heap[0][0]
            if seq != self.next_seq:
                if not force and len(self._heap) <= self.depth:
                    break
                missing = seq - self.next_seq
                self.lost += missing
                notices.append(Notice("sequence_gap", f"{missing} message(s) lost before {seq}"))
                self.next_seq = seq
            _, _, item = heapq.heappop(self._heap)
            out.append(item)
            self.next_seq += 1
        return out, notices

    @property
    def held(self) -> int:
        return len(self._heap)
