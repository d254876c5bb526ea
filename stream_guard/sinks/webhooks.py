"""Signed webhooks for alerts and call summaries, delivered at least once from the durable outbox.

Message format (in the manner of the Standard Webhooks convention, standardwebhooks.com):

- body: ``{"type": "alert.raised" | "alert.cleared" | "stream.summary", "timestamp": ISO-8601, "data":
  {...}}``
  where ``data`` is the event's JSON (``stream_guard.events``) plus ``labels`` (call ids, track, role);
- headers ``webhook-id`` (the idempotency key, also sent as ``Idempotency-Key``), ``webhook-timestamp`` (Unix
  seconds of *this attempt*) and ``webhook-signature: v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>``.

A receiver verifies with :func:`verify` (or any Standard Webhooks library), rejects timestamps outside a
tolerance window (replay protection) and de-duplicates by ``webhook-id``. Secrets may be given as
``whsec_<base64>`` (the convention's format) or as plain text.

Retries: any non-2xx answer or network error is retried with exponential backoff (1 s doubling up to 10 min,
with jitter, honouring ``Retry-After``) until ``max_attempts`` or ``max_age_s``; 410 Gone stops at once.
:class:`RetryPolicy` and :func:`sign` are pure; :class:`WebhookDispatcher` is the thin asyncio adapter.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from stream_guard.events import AlertEvent, Event, SummaryEvent
from stream_guard.sinks.outbox import Outbox, Pending

log = logging.getLogger("stream_guard.webhooks")


class SignatureError(ValueError):
    """A webhook's signature or timestamp does not verify."""


def secret_bytes(secret: str | bytes) -> bytes:
    """``whsec_<base64>`` -> the decoded key; anything else is used as UTF-8 bytes."""
    if isinstance(secret, bytes):
        return secret
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_") :], validate=True)
        except ValueError:
            raise ValueError("webhook secret starts with whsec_ but is not valid base64") from None
    if not secret:
        raise ValueError("webhook secret is empty")
    return secret.encode()


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64 HMAC-SHA256(id.timestamp.body)>``."""
    mac = hmac.new(secret_bytes(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> str:
    """Check a received webhook; returns its id or raises SignatureError. Header names are
    case-insensitive."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sig = lower.get("webhook-id"), lower.get("webhook-timestamp"), lower.get("webhook-signature")
    if not msg_id or not ts or not sig:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        timestamp = int(ts)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError("webhook-timestamp is outside the tolerance window")
    expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
    for candidate in sig.split():  # several space-separated signatures are allowed (key rotation)
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return msg_id
    raise SignatureError("no webhook-signature matches")


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again after a failed delivery (pure; the random source is injectable for tests)."""

    base_s: float = 1.0
    max_delay_s: float = 600.0
    max_attempts: int = 15
    max_age_s: float = 3 * 24 * 3600.0
    jitter: float = 0.1

    def next_attempt(
        self,
        attempts: int,
        created: float,
        now: float,
        retry_after_s: float | None = None,
        rng: Callable[[], float] = random.random,
    ) -> float | None:
        """Absolute time of the next try after ``attempts`` failed ones, or None to give up."""
        if attempts >= self.max_attempts or now - created >= self.max_age_s:
            return None
        delay = min(self.max_delay_s, self.base_s * 2 ** max(0, attempts - 1))
        delay *= 1.0 + self.jitter * rng()
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_delay_s))
        return now + delay


@dataclass(frozen=True)
class WebhookEndpoint:
    """A receiver: its URL, signing secret, and which message types it wants (empty = all)."""

    url: str
    secret: str
    types: frozenset[str] = frozenset()

    def wants(self, kind: str) -> bool:
        return not self.types or kind in self.types or kind.split(".")[0] in self.types


def message_type(event: Event) -> str | None:
    """The webhook type of an event, or None for events that are not sent as webhooks (scores, maps)."""
    if isinstance(event, AlertEvent):
        return f"alert.{event.state}"
    if isinstance(event, SummaryEvent):
        return "stream.summary"
    return None


def build_message(event: Event, labels: Mapping[str, str], url: str) -> tuple[str, bytes] | None:
    """(idempotency key, body) for an event, or None if the event is not a webhook.

    The key is a hash of the target URL and the event's JSON, so the same event for the same receiver always
    gets the same id, which makes a repeated enqueue (or a re-sent alert after a crash) harmless.
    """
    kind = message_type(event)
    if kind is None:
        return None
    data = event.to_dict()
    data["labels"] = dict(labels)
    created = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    event_json = json.dumps(data, sort_keys=True, separators=(",", ":"))
    msg_id = "msg_" + hashlib.sha256(f"{url}\n{event_json}".encode()).hexdigest()[:32]
    body = json.dumps({"type": kind, "timestamp": created, "data": data}, separators=(",", ":")).encode()
    return msg_id, body


@dataclass
class DeliveryResult:
    ok: bool
    status: int | None = None
    error: str = ""
    retry_after_s: float | None = None
    permanent: bool = False


def post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> DeliveryResult:
    """One blocking HTTP POST (run in a worker thread); never raises for network or HTTP errors."""
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # receivers are reached directly
    try:
        with opener.open(request, timeout=timeout_s) as resp:
            resp.read(65536)
            return DeliveryResult(ok=200 <= resp.status < 300, status=resp.status)
    except urllib.error.HTTPError as exc:
        retry_after = None
        value = exc.headers.get("Retry-After") if exc.headers else None
        if value and value.strip().isdigit():
            retry_after = float(value.strip())
        return DeliveryResult(
            ok=False,
            status=exc.code,
            error=f"HTTP {exc.code}",
            retry_after_s=retry_after,
            permanent=exc.code == 410,
        )
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return DeliveryResult(ok=False, error=f"{type(exc).__name__}: {reason}"[:300])


@dataclass
class WebhookStats:
    """Counters exported as metrics."""

    enqueued: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    dead: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


class WebhookDispatcher:
    """Feeds alert and summary events into the outbox and delivers them in the background.

    ``submit`` returns once the message is durably stored (so an alert acknowledged to the engine is never
    lost); ``run`` delivers due messages with at most ``concurrency`` requests in flight; ``flush`` is for
    graceful shutdown: it delivers what is due now and waits up to ``timeout_s`` for the rest. Messages left
    over by a previous process are picked up by ``run`` on start.
    """

    def __init__(
        self,
        outbox: Outbox,
        endpoints: list[WebhookEndpoint],
        policy: RetryPolicy | None = None,
        timeout_s: float = 5.0,
        concurrency: int = 4,
        poster: Callable[[str, bytes, Mapping[str, str], float], DeliveryResult] = post,
    ) -> None:
        self.outbox = outbox
        self.endpoints = {e.url: e for e in endpoints}
        self.policy = policy or RetryPolicy()
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.poster = poster
        self.stats = WebhookStats()
        self._wake = asyncio.Event()
        self._closed = False
        self.on_result: Callable[[Pending, DeliveryResult], None] | None = None

    async def submit(self, event: Event, labels: Mapping[str, str] | None = None) -> int:
        """Store the event for every endpoint that wants it; returns how many messages were new."""
        kind = message_type(event)
        if kind is None or not self.endpoints:
            return 0
        new = 0
        for endpoint in self.endpoints.values():
            if not endpoint.wants(kind):
                continue
            built = build_message(event, labels or {}, endpoint.url)
            if built is None:
                continue
            msg_id, body = built
            if await asyncio.to_thread(self.outbox.enqueue, msg_id, endpoint.url, body):
                new += 1
        self.stats.enqueued += new
        if new:
            self._wake.set()
        return new

    async def run(self) -> None:
        """Deliver forever (until cancelled or :meth:`close`)."""
        while not self._closed:
            self._wake.clear()
            await self.deliver_due()
            next_at = await asyncio.to_thread(self.outbox.next_due_at)
            wait = 1.0 if next_at is None else max(0.0, min(1.0, next_at - time.time()))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def deliver_due(self) -> int:
        """Attempt every message that is due now; returns how many were delivered."""
        batch = await asyncio.to_thread(self.outbox.due, None, 64)
        if not batch:
            return 0
        sem = asyncio.Semaphore(self.concurrency)

        async def one(p: Pending) -> bool:
            async with sem:
                return await self._attempt(p)

        results = await asyncio.gather(*(one(p) for p in batch))
        return sum(results)

    async def flush(self, timeout_s: float = 10.0) -> dict[str, int]:
        """Deliver what can be delivered within ``timeout_s`` (graceful shutdown); returns the outbox
        counts."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await self.deliver_due()
            counts = await asyncio.to_thread(self.outbox.counts)
            if counts["pending"] == 0:
                break
            next_at = await asyncio.to_thread(self.outbox.next_due_at)
            if next_at is None or next_at - time.time() > deadline - time.monotonic():
                break
            await asyncio.sleep(max(0.05, min(0.5, next_at - time.time())))
        return await asyncio.to_thread(self.outbox.counts)

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def _attempt(self, p: Pending) -> bool:
        endpoint = self.endpoints.get(p.url)
        if endpoint is None:  # configuration changed since the message was stored
            await asyncio.to_thread(self.outbox.failed, p.id, "endpoint no longer configured", None)
            self.stats.dead += 1
            return False
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "stream-guard-webhooks/1",
            "webhook-id": p.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(endpoint.secret, p.id, timestamp, p.body),
            "Idempotency-Key": p.id,
        }
        result = await asyncio.to_thread(self.poster, p.url, p.body, headers, self.timeout_s)
        key = str(result.status) if result.status is not None else "network_error"
        self.stats.by_status[key] = self.stats.by_status.get(key, 0) + 1
        if self.on_result is not None:
            self.on_result(p, result)
        if result.ok:
            await asyncio.to_thread(self.outbox.delivered, p.id)
            self.stats.delivered += 1
            return True
        self.stats.failed_attempts += 1
        retry_at = None
        if not result.permanent:
            retry_at = self.policy.next_attempt(p.attempts + 1, p.created, time.time(), result.retry_after_s)
        await asyncio.to_thread(self.outbox.failed, p.id, result.error, retry_at)
        if retry_at is None:
            self.stats.dead += 1
            log.warning(
                "webhook %s to %s abandoned after %d attempt(s): %s",
                p.id,
                p.url,
                p.attempts + 1,
                result.error,
            )
        return False
