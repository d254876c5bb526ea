"""Per-connection rate limiting and deadlines, as plain objects fed a clock (sans-I/O, testable without time).

A token bucket per connection bounds both messages per second and bytes per second. A platform sending 20 ms
frames in real time uses 50-100 messages per second, far below the default limit, while a peer flooding the
socket is closed with 1008 instead of starving the other calls of CPU. The burst allowance is ten seconds'
worth: the limiter sees messages when the server *reads* them, so after a moment of server overload a
legitimate call's backlog arrives as a burst, and that must not be mistaken for a flood (a real flood at ten
times the limit still exhausts the allowance within about a second).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """``rate`` tokens per second, up to ``burst`` stored; :meth:`take` says whether ``n`` tokens were
    there."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    stamp: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, n: float, now: float) -> bool:
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


@dataclass
class ConnectionLimiter:
    """Message and byte rate limits of one connection; :meth:`admit` returns None or the reason to close."""

    messages_per_s: float
    bytes_per_s: float
    burst_s: float = 10.0
    _messages: TokenBucket = field(init=False)
    _bytes: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        self._messages = TokenBucket(self.messages_per_s, self.messages_per_s * self.burst_s)
        self._bytes = TokenBucket(self.bytes_per_s, self.bytes_per_s * self.burst_s)

    def admit(self, size: int, now: float) -> str | None:
        if not self._messages.take(1, now):
            return f"rate limit: more than {self.messages_per_s:g} messages/s"
        if not self._bytes.take(size, now):
            return f"rate limit: more than {self.bytes_per_s:g} bytes/s"
        return None
