"""Webhook signing, retry policy, the SQLite outbox, and delivery to a real receiver that is down a while."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter

import pytest
from receiver import WebhookReceiver

from stream_guard.events import AlertEvent, ScoreEvent, SummaryEvent
from stream_guard.sinks.outbox import Outbox, OutboxError
from stream_guard.sinks.webhooks import (
    RetryPolicy,
    SignatureError,
    WebhookDispatcher,
    WebhookEndpoint,
    build_message,
    sign,
    verify,
)

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_sign_and_verify_round_trip():
    body = b'{"type":"alert.raised"}'
    ts = 1_700_000_000
    sig = sign(SECRET, "msg_1", ts, body)
    assert sig.startswith("v1,")
    headers = {"Webhook-Id": "msg_1", "Webhook-Timestamp": str(ts), "Webhook-Signature": sig}
    assert verify(SECRET, headers, body, now=ts + 10) == "msg_1"
    with pytest.raises(SignatureError):
        verify(SECRET, headers, body + b" ", now=ts)
    with pytest.raises(SignatureError):
        verify("whsec_" + base64.b64encode(b"other").decode(), headers, body, now=ts)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, headers, body, now=ts + 3600)


def test_signature_matches_the_standard_webhooks_construction():
    # Standard Webhooks: base64(HMAC-SHA256(base64decode(secret without whsec_), f"{id}.{ts}.{body}"))
    import hashlib
    import hmac

    key = base64.b64decode(SECRET[6:])
    expected = base64.b64encode(hmac.new(key, b"msg_2.42.hello", hashlib.sha256).digest()).decode()
    assert sign(SECRET, "msg_2", 42, b"hello") == f"v1,{expected}"


def test_retry_policy_backs_off_and_gives_up():
    policy = RetryPolicy(base_s=1.0, max_delay_s=60.0, max_attempts=5, jitter=0.0)
    delays = [policy.next_attempt(n, created=0.0, now=100.0) - 100.0 for n in range(1, 5)]
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert policy.next_attempt(5, created=0.0, now=100.0) is None
    assert policy.next_attempt(1, created=0.0, now=100.0, retry_after_s=30) == 130.0
    assert RetryPolicy(max_age_s=10).next_attempt(1, created=0.0, now=11.0) is None


def test_outbox_is_idempotent_and_durable(tmp_path):
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    assert box.enqueue("m1", "http://x/hook", b"{}", now=10.0)
    assert not box.enqueue("m1", "http://x/hook", b"{}", now=11.0)
    box.enqueue("m2", "http://x/hook", b"{}", now=12.0)
    box.failed("m2", "HTTP 500", retry_at=100.0)
    assert [p.id for p in box.due(now=50.0)] == ["m1"]
    box.close()
    reopened = Outbox(path)
    assert reopened.counts() == {"pending": 2, "delivered": 0, "dead": 0}
    reopened.delivered("m1")
    reopened.failed("m2", "gone", retry_at=None)
    assert reopened.counts() == {"pending": 0, "delivered": 1, "dead": 1}
    assert reopened.purge(older_than_s=-1) == 2


def test_outbox_unwritable_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutboxError, match="file"):
        Outbox(blocker / "outbox.sqlite")


def test_only_alerts_and_summaries_are_webhooks():
    assert build_message(ScoreEvent("s"), {}, "http://x") is None
    a = build_message(AlertEvent("s", state="raised", at_s=2.0), {"call_sid": "CA1"}, "http://x")
    b = build_message(AlertEvent("s", state="raised", at_s=2.0), {"call_sid": "CA1"}, "http://x")
    assert a is not None and b is not None and a[0] == b[0]  # same event, same idempotency key
    c = build_message(AlertEvent("s", state="cleared", at_s=3.0), {}, "http://x")
    assert c is not None and c[0] != a[0]


async def _wait_for(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


def test_receiver_down_then_up_gets_every_alert_exactly_once(tmp_path):
    receiver = WebhookReceiver(SECRET, fail_first=2)  # not listening yet; then two 503s once it is up
    events = [AlertEvent(f"call-{i}", state="raised", at_s=float(i), probability=0.9) for i in range(6)]
    events.append(SummaryEvent("call-0", verdict="synthetic", alerts=1))

    async def scenario() -> WebhookDispatcher:
        box = Outbox(tmp_path / "outbox.sqlite")
        dispatcher = WebhookDispatcher(
            box,
            [WebhookEndpoint(receiver.url, SECRET)],
            RetryPolicy(base_s=0.05, max_delay_s=0.2),
            timeout_s=2,
        )
        runner = asyncio.create_task(dispatcher.run())
        for e in events:
            await dispatcher.submit(e, {"call_sid": "CA1"})
        for e in events[:3]:  # a re-submitted alert is the same message, not a new one
            await dispatcher.submit(e, {"call_sid": "CA1"})
        await _wait_for(lambda: dispatcher.stats.failed_attempts >= len(events))  # all tried while down
        receiver.start()
        try:
            await _wait_for(lambda: box.counts()["delivered"] == len(events))
        finally:
            dispatcher.close()
            await runner
            receiver.stop()
        return dispatcher

    dispatcher = asyncio.run(scenario())
    ids = receiver.ids()
    assert len(ids) == len(events) and max(Counter(ids).values()) == 1
    assert not receiver.rejected
    kinds = Counter(body["type"] for _, body in receiver.deliveries)
    assert kinds == {"alert.raised": 6, "stream.summary": 1}
    assert receiver.deliveries[0][1]["data"]["labels"] == {"call_sid": "CA1"}
    assert dispatcher.stats.by_status.get("503") == 2 and dispatcher.stats.by_status["network_error"] >= 7


def test_pending_messages_survive_a_restart(tmp_path):
    receiver = WebhookReceiver(SECRET)
    path = tmp_path / "outbox.sqlite"

    async def first_process() -> None:
        dispatcher = WebhookDispatcher(Outbox(path), [WebhookEndpoint(receiver.url, SECRET)])
        await dispatcher.submit(AlertEvent("call-9", state="raised", at_s=1.0))
        # the process "dies" here: nothing delivered, the outbox closed without ceremony

    async def second_process() -> dict[str, int]:
        receiver.start()
        box = Outbox(path)
        dispatcher = WebhookDispatcher(box, [WebhookEndpoint(receiver.url, SECRET)])
        try:
            return await dispatcher.flush(timeout_s=10)
        finally:
            receiver.stop()

    asyncio.run(first_process())
    counts = asyncio.run(second_process())
    assert counts["delivered"] == 1 and counts["pending"] == 0
    assert len(receiver.ids()) == 1
