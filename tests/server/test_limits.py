"""Auth, limits and malformed traffic on live sockets: the offender is closed with a clear code."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from serverkit import TOKEN, mulaw, noise, running, url
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stream_guard.protocols.simulators import twilio_call
from stream_guard.server import ConfigError, Limits, ServerConfig
from stream_guard.server.auth import twilio_signature
from stream_guard.server.limits import ConnectionLimiter

START = json.dumps({"type": "start", "stream": "s1", "sample_rate": 8000, "encoding": "mulaw"})


async def closed_with(ws) -> tuple[int | None, str]:
    """Wait for the server to close ``ws``; return (code, reason)."""
    try:
        async with asyncio.timeout(20):
            while True:
                await ws.recv()
    except ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason or ""


async def status_of(address: str, **kwargs) -> int | None:
    try:
        async with connect(address, proxy=None, **kwargs):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_no_auth_only_on_loopback():
    with pytest.raises(ConfigError, match="loopback"):
        ServerConfig(host="0.0.0.0", auth=False).validate()
    with pytest.raises(ConfigError, match="no credential"):
        ServerConfig(host="127.0.0.1").validate()
    assert ServerConfig(host="127.0.0.1", auth=False).validate()


def test_authentication(phone_bundle, tmp_path):
    async def main():
        async with running(
            phone_bundle,
            tmp_path,
            twilio_auth_token="tw-secret",
            audiohook_api_keys=("ah-key",),
            public_url="wss://guard.example.com",
            allowed_origins=("https://app.example.com",),
        ) as server:
            base = f"ws://127.0.0.1:{server.port}"
            good_sig = twilio_signature("tw-secret", "wss://guard.example.com/twilio")
            return {
                "no token": await status_of(base + "/v1/stream"),
                "bad token": await status_of(base + "/v1/stream?token=nope"),
                "query token": await status_of(url(server, "/v1/stream")),
                "header token": await status_of(
                    base + "/v1/events", additional_headers={"Authorization": f"Bearer {TOKEN}"}
                ),
                "twilio signed": await status_of(
                    base + "/twilio", additional_headers={"X-Twilio-Signature": good_sig}
                ),
                "twilio unsigned": await status_of(url(server, "/twilio")),
                "audiohook key": await status_of(
                    base + "/audiohook", additional_headers={"X-API-KEY": "ah-key"}
                ),
                "audiohook bad key": await status_of(
                    base + "/audiohook", additional_headers={"X-API-KEY": "x"}
                ),
                "evil origin": await status_of(url(server, "/v1/stream"), origin="https://evil.example"),
                "good origin": await status_of(url(server, "/v1/stream"), origin="https://app.example.com"),
                "unknown path": await status_of(url(server, "/nope")),
            }

    got = asyncio.run(main())
    assert got == {
        "no token": 401,
        "bad token": 401,
        "query token": 101,
        "header token": 101,
        "twilio signed": 101,
        "twilio unsigned": 401,
        "audiohook key": 101,
        "audiohook bad key": 401,
        "evil origin": 403,
        "good origin": 101,
        "unknown path": 404,
    }


@pytest.mark.parametrize(
    ("path", "messages", "code", "reason_part"),
    [
        ("/v1/stream", ["{garbage"], 1007, "JSON"),
        ("/twilio", ['{"event": "connected", "protocol": "Call"}', b"\x00\x01"], 1003, "binary"),
        ("/twilio", ['{"event": "teleport"}'], 1002, "unknown event"),
        ("/v1/ingest", ['{"hello": "world"}'], 1002, "no supported protocol"),
        ("/v1/stream", [START, b"\x00" * 2_000_000], 1009, ""),
    ],
)
def test_malformed_traffic_closes_only_the_offender(
    phone_bundle, tmp_path, caplog, path, messages, code, reason_part
):
    good_audio = mulaw(noise(3.0, 0.05))

    async def main():
        async with running(phone_bundle, tmp_path) as server:
            good = await connect(url(server, "/v1/stream"), proxy=None)
            await good.send(START)
            await good.recv()  # started
            bad = await connect(url(server, path), proxy=None)
            for m in messages:
                await bad.send(m)
            result = await closed_with(bad)
            await good.send(good_audio)  # the other connection is unaffected
            await good.send('{"type": "stop"}')
            last = None
            while last is None or last["type"] != "summary":
                last = json.loads(await good.recv())
            await good.close()
            return result, last

    with caplog.at_level(logging.DEBUG):
        (got_code, reason), summary = asyncio.run(main())
    assert got_code == code and reason_part in reason
    assert summary["windows"] > 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_bad_base64_mid_call_keeps_the_accepted_audio(phone_bundle, tmp_path):
    msgs = list(twilio_call(mulaw(noise(3.0, 0.05))))
    broken = json.loads(msgs[5])
    broken["media"]["payload"] = "***not base64***"

    async def main():
        async with running(phone_bundle, tmp_path) as server:
            sub = await connect(url(server, "/v1/events"), proxy=None)
            while not server.hub.subscriptions:
                await asyncio.sleep(0.01)
            ws = await connect(url(server, "/twilio"), proxy=None)
            for m in [*msgs[:5], json.dumps(broken), *msgs[6:]]:
                try:
                    await ws.send(m)
                except ConnectionClosed:
                    break
            result = await closed_with(ws)
            summary = None
            while summary is None:
                ev = json.loads(await sub.recv())
                if ev["type"] == "summary":
                    summary = ev
            await sub.close()
            return result, summary

    (code, reason), summary = asyncio.run(main())
    assert code == 1007 and "base64" in reason
    assert summary["stream"] == "MZ0001/inbound" and summary["duration_s"] > 0


@pytest.mark.parametrize(
    ("limits", "code", "reason_part"),
    [
        (Limits(idle_timeout_s=0.3), 4408, "idle"),
        (Limits(max_stream_s=0.4, idle_timeout_s=5), 4410, "maximum duration"),
        (Limits(max_messages_per_s=5), 1008, "rate limit"),
    ],
)
def test_connection_limits(phone_bundle, tmp_path, limits, code, reason_part):
    async def main():
        async with running(phone_bundle, tmp_path, limits=limits) as server:
            ws = await connect(url(server, "/v1/stream"), proxy=None)
            await ws.send(START)
            if code == 1008:
                for _ in range(300):
                    try:
                        await ws.send(b"\x7f" * 160)
                    except ConnectionClosed:
                        break
            elif code == 4410:
                for _ in range(20):
                    try:
                        await ws.send(b"\x7f" * 160)
                        await asyncio.sleep(0.05)
                    except ConnectionClosed:
                        break
            return await closed_with(ws)

    got_code, reason = asyncio.run(main())
    assert got_code == code and reason_part in reason


def test_max_streams_and_connection_flood(phone_bundle, tmp_path):
    async def main():
        limits = Limits(max_streams=1, max_connections=4, max_messages_per_s=1e6, max_bytes_per_s=1e9)
        async with running(phone_bundle, tmp_path, limits=limits) as server:
            first = await connect(url(server, "/v1/stream"), proxy=None)
            await first.send(START)
            await first.recv()
            second = await connect(url(server, "/v1/stream"), proxy=None)
            await second.send(START.replace("s1", "s2"))
            refused = await closed_with(second)
            # a flood: many more connections than allowed at once
            attempts = await asyncio.gather(
                *(status_of(url(server, "/v1/events")) for _ in range(30)), return_exceptions=True
            )
            statuses = [a for a in attempts if isinstance(a, int)]
            await first.send(b"\x7f" * 8000)  # the established stream still works
            await first.send('{"type": "stop"}')
            last = None
            while last is None or last["type"] != "summary":
                last = json.loads(await first.recv())
            await first.close()
            metrics = server.metrics.render().decode()
            return refused, statuses, last, metrics

    refused, statuses, summary, metrics = asyncio.run(main())
    assert refused[0] == 4429 and "capacity" in refused[1]
    assert 503 in statuses and statuses.count(101) <= 4
    assert summary["stream"] == "s1"
    assert 'streamguard_rejects_total{reason="max_streams"} 1.0' in metrics


def test_rate_limiter_allows_a_backlog_burst_but_not_a_flood():
    limiter = ConnectionLimiter(messages_per_s=200, bytes_per_s=1e9)
    # a call whose last 10 s were held up by an overloaded server arrives all at once: accepted
    assert all(limiter.admit(200, now=100.0) is None for _ in range(1000))
    # then real time again: 50 messages/s, well under the limit
    assert all(limiter.admit(200, now=100.0 + i * 0.02) is None for i in range(1, 500))
    # a flood at 10x the limit is refused within about a second
    t, refused = 200.0, None
    for i in range(5000):
        refused = limiter.admit(200, now=t + i / 2000)
        if refused:
            break
    assert refused and "messages/s" in refused and i / 2000 < 1.5
