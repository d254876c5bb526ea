"""The server with real websocket clients on loopback: every protocol, score parity with the engine, sinks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.request

import numpy as np
from receiver import WebhookReceiver
from serverkit import mulaw, noise, pcm16, running, url
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from stream_guard.core.formats import AudioFormat
from stream_guard.protocols.simulators import (
    AudioHookClient,
    exotel_call,
    plivo_call,
    telnyx_call,
    twilio_call,
    vonage_hello,
)
from stream_guard.sinks.webhooks import WebhookEndpoint

SECRET = "whsec_dGVzdC1zZWNyZXQtMDEyMzQ1Njc4OQ=="


async def subscribe(server, query: str = ""):
    ws = await connect(url(server, "/v1/events" + query), proxy=None)
    for _ in range(200):  # the subscription is registered by the handler right after the handshake
        if server.hub.subscriptions:
            break
        await asyncio.sleep(0.01)
    return ws


async def events_until_summaries(ws, streams: set[str], timeout: float = 60.0) -> dict[str, list[dict]]:
    """Collect events per stream until every stream in ``streams`` has sent its summary."""
    out: dict[str, list[dict]] = {s: [] for s in streams}
    done: set[str] = set()
    async with asyncio.timeout(timeout):
        while done != streams:
            ev = json.loads(await ws.recv())
            if ev.get("stream") in out:
                out[ev["stream"]].append(ev)
                if ev["type"] == "summary":
                    done.add(ev["stream"])
    return out


def scores(events: list[dict]) -> list[tuple[int, float]]:
    return [(e["window_index"], e["score"]) for e in events if e["type"] == "score"]


async def reference_scores(server, data: bytes, fmt: AudioFormat) -> list[tuple[int, float]]:
    """What `stream-guard scan` computes for the same audio: the engine directly, offline."""
    events = await server.engine.scan(data, fmt, stream_id="reference")
    return [(e.window_index, e.score) for e in events if e.type == "score"]


def assert_same_scores(got, want):
    assert [i for i, _ in got] == [i for i, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-5, atol=1e-5)


def test_health_and_metrics(phone_bundle, tmp_path):
    async def main():
        async with running(phone_bundle, tmp_path) as server:
            base = f"http://127.0.0.1:{server.port}"
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            health = await asyncio.to_thread(lambda: opener.open(base + "/healthz").read())
            metrics = await asyncio.to_thread(lambda: opener.open(base + "/metrics").read().decode())
            return health, metrics

    health, metrics = asyncio.run(main())
    assert health == b"ok\n"
    assert "streamguard_active_streams" in metrics and "streamguard_window_latency_seconds" in metrics


def test_metrics_count_skipped_windows_apart_from_scored_ones(phone_bundle, tmp_path):
    """Silent windows abstain without inference: counted as skipped, never as scored, no latency recorded."""
    audio = np.concatenate([noise(3.0, 0.02, rate=16000), np.zeros(3 * 16000, np.float32)])

    def metric(text: str, name: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith(name + " "))
        return float(line.split()[1])

    async def main():
        async with (
            running(phone_bundle, tmp_path) as server,
            connect(url(server, "/v1/stream"), proxy=None) as ws,
        ):
            await ws.send(json.dumps({"type": "start", "stream": "quiet", "sample_rate": 16000}))
            await ws.recv()
            for i in range(0, len(audio), 3200):
                await ws.send(pcm16(audio[i : i + 3200]))
            await ws.send(json.dumps({"type": "stop"}))
            events = []
            while not events or events[-1]["type"] != "summary":
                events.append(json.loads(await ws.recv()))
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            base = f"http://127.0.0.1:{server.port}"
            metrics = await asyncio.to_thread(lambda: opener.open(base + "/metrics").read().decode())
            return events, metrics

    events, metrics = asyncio.run(main())
    score_events = [e for e in events if e["type"] == "score"]
    skipped = [e for e in score_events if e["score"] is None]
    assert skipped and len(skipped) < len(score_events), "the silent half abstains, the noisy half is scored"
    assert all("no_speech" in e["reasons"] for e in skipped)
    assert events[-1]["windows_skipped"] == len(skipped)
    assert metric(metrics, "streamguard_windows_skipped_total") == len(skipped)
    assert metric(metrics, "streamguard_windows_scored_total") == len(score_events) - len(skipped)
    assert metric(metrics, "streamguard_window_latency_seconds_count") == len(score_events) - len(skipped)


def test_native_protocol_streams_events_back(phone_bundle, tmp_path):
    audio = noise(4.0, 0.02, rate=16000)

    async def main():
        async with (
            running(phone_bundle, tmp_path) as server,
            connect(url(server, "/v1/stream"), proxy=None) as ws,
        ):
            await ws.send(
                json.dumps({"type": "start", "stream": "n1", "sample_rate": 16000, "emit_map": True})
            )
            started = json.loads(await ws.recv())
            for i in range(0, len(audio), 3200):
                await ws.send(pcm16(audio[i : i + 3200]))
            await ws.send(json.dumps({"type": "stop"}))
            events = []
            while not events or events[-1]["type"] != "summary":
                events.append(json.loads(await ws.recv()))
            ref = await reference_scores(server, pcm16(audio), AudioFormat(16000, "pcm16"))
            return started, events, ref

    started, events, ref = asyncio.run(main())
    assert started == {"type": "started", "stream": "n1", "v": 1}
    kinds = {e["type"] for e in events}
    assert {"score", "map", "summary"} <= kinds
    assert events[-1]["verdict"] == "real"
    assert_same_scores(scores(events), ref)


def test_twilio_both_tracks_scores_match_the_engine(phone_bundle, tmp_path):
    caller, agent = noise(6.0, 0.3, seed=1), noise(6.0, 0.05, seed=2)
    inbound, outbound = mulaw(caller), mulaw(agent)

    async def main():
        async with running(phone_bundle, tmp_path) as server:
            sub = await subscribe(server)
            async with connect(url(server, "/twilio"), proxy=None) as call:
                for msg in twilio_call(inbound, outbound):
                    await call.send(msg)
                got = await events_until_summaries(sub, {"MZ0001/inbound", "MZ0001/outbound"})
            ref_in = await reference_scores(server, inbound, AudioFormat(8000, "mulaw"))
            ref_out = await reference_scores(server, outbound, AudioFormat(8000, "mulaw"))
            await sub.close()
            return got, ref_in, ref_out

    got, ref_in, ref_out = asyncio.run(main())
    assert_same_scores(scores(got["MZ0001/inbound"]), ref_in)
    assert_same_scores(scores(got["MZ0001/outbound"]), ref_out)
    assert got["MZ0001/inbound"][-1]["verdict"] == "synthetic"
    assert got["MZ0001/outbound"][-1]["verdict"] == "real"
    assert any(e["type"] == "alert" and e["state"] == "raised" for e in got["MZ0001/inbound"])


def test_telnyx_out_of_order_over_the_socket(phone_bundle, tmp_path):
    payload = mulaw(noise(4.0, 0.1, seed=3))
    msgs = telnyx_call(payload)
    body = msgs[1:-1]
    rng = np.random.default_rng(4)
    shuffled = []
    for i in range(0, len(body), 4):
        shuffled += list(rng.permutation(body[i : i + 4]))

    async def main():
        async with running(phone_bundle, tmp_path) as server:
            sub = await subscribe(server)
            async with connect(url(server, "/telnyx"), proxy=None) as call:
                for msg in [msgs[0], *shuffled, msgs[-1]]:
                    await call.send(str(msg))
                got = await events_until_summaries(sub, {"32DE0DEA-53CB/inbound"})
            return got, await reference_scores(server, payload, AudioFormat(8000, "mulaw"))

    got, ref = asyncio.run(main())
    assert_same_scores(scores(got["32DE0DEA-53CB/inbound"]), ref)


def test_plivo_exotel_vonage_and_auto_detect(phone_bundle, tmp_path):
    audio = pcm16(noise(3.0, 0.05, seed=5))
    audio16 = pcm16(noise(3.0, 0.05, rate=16000, seed=6))

    async def main():
        async with running(phone_bundle, tmp_path) as server:
            sub = await subscribe(server)
            async with connect(url(server, "/plivo"), proxy=None) as ws:
                for m in plivo_call(audio):
                    await ws.send(m)
            async with connect(url(server, "/exotel"), proxy=None) as ws:
                for m in exotel_call(audio):
                    await ws.send(m)
            async with connect(url(server, "/vonage"), proxy=None) as ws:
                await ws.send(vonage_hello(16000))
                for i in range(0, len(audio16), 640):
                    await ws.send(audio16[i : i + 640])
            async with connect(url(server, "/v1/ingest"), proxy=None) as ws:  # auto-detected Twilio
                for m in twilio_call(mulaw(noise(3.0, 0.05, seed=7)), sid="MZauto"):
                    await ws.send(m)
            got = await events_until_summaries(
                sub, {"s-1/inbound", "MZex01/inbound", "vg-call-1", "MZauto/inbound"}
            )
            metrics = server.metrics.render().decode()
            ref_plivo = await reference_scores(server, audio, AudioFormat(8000, "pcm16"))
            ref_vonage = await reference_scores(server, audio16, AudioFormat(16000, "pcm16"))
            return got, ref_plivo, ref_vonage, metrics

    got, ref_plivo, ref_vonage, metrics = asyncio.run(main())
    for protocol in ("plivo", "exotel", "vonage", "twilio"):
        assert f'streamguard_streams_total{{protocol="{protocol}"}} 1.0' in metrics
    assert 'streamguard_active_streams{protocol="vonage"} 0.0' in metrics
    assert_same_scores(scores(got["s-1/inbound"]), ref_plivo)
    assert_same_scores(scores(got["MZex01/inbound"]), ref_plivo)
    assert_same_scores(scores(got["vg-call-1"]), ref_vonage)
    assert got["MZauto/inbound"][-1]["windows"] > 0


def test_audiohook_session_with_stereo_pause_resume_and_verdicts(phone_bundle, tmp_path):
    external, internal = mulaw(noise(4.0, 0.3, seed=8)), mulaw(noise(4.0, 0.05, seed=9))
    stereo = bytes(b for pair in zip(external, internal, strict=True) for b in pair)
    client = AudioHookClient()
    sid = client.session

    async def main():
        async with running(phone_bundle, tmp_path, audiohook_api_keys=("ah-key",)) as server:
            sub = await subscribe(server)
            async with connect(
                f"ws://127.0.0.1:{server.port}/audiohook",
                proxy=None,
                additional_headers={"X-API-KEY": "ah-key"},
            ) as ws:
                await ws.send(client.open())
                opened = client.saw(await ws.recv())
                await ws.send(client.msg("ping", rtt="PT0.01S"))
                pong = client.saw(await ws.recv())
                half = len(stereo) // 2
                for i in range(0, half, 320):
                    await ws.send(stereo[i : i + 320])
                await ws.send(client.msg("paused"))
                await ws.send(stereo[:320])  # dropped: sent while paused
                await ws.send(client.msg("resumed", start="PT2S", discarded="PT0S"))
                for i in range(half, len(stereo), 320):
                    await ws.send(stereo[i : i + 320])
                await ws.send(client.msg("close", reason="end"))
                closed = client.saw(await ws.recv())
            got = await events_until_summaries(sub, {f"{sid}/external", f"{sid}/internal"})
            ref_ext = await reference_scores(server, external, AudioFormat(8000, "mulaw"))
            ref_int = await reference_scores(server, internal, AudioFormat(8000, "mulaw"))
            return opened, pong, closed, got, ref_ext, ref_int

    opened, pong, closed, got, ref_ext, ref_int = asyncio.run(main())
    assert opened["type"] == "opened" and pong["type"] == "pong"
    assert closed["type"] == "closed"
    out = closed["parameters"]["outputVariables"]
    assert out["streamGuardExternalVerdict"] == "synthetic" and out["streamGuardInternalVerdict"] == "real"
    assert out["streamGuardVerdict"] == "synthetic"
    assert_same_scores(scores(got[f"{sid}/external"]), ref_ext)
    assert_same_scores(scores(got[f"{sid}/internal"]), ref_int)


def test_alert_webhook_delivered_and_shutdown_flushes(phone_bundle, tmp_path, caplog):
    receiver = WebhookReceiver(SECRET)
    receiver.start()
    call = mulaw(noise(5.0, 0.3, seed=10))

    async def main():
        async with running(
            phone_bundle,
            tmp_path,
            webhooks=(WebhookEndpoint(receiver.url, SECRET),),
            jsonl_path=str(tmp_path / "e.jsonl"),
        ) as server:
            ws = await connect(url(server, "/twilio"), proxy=None)
            msgs = list(twilio_call(call))
            for m in msgs[:-1]:  # no stop: the server shutdown must finish the stream itself
                await ws.send(m)
            await asyncio.sleep(0.5)
        # leaving the block stopped the server: summary emitted and webhooks flushed
        return ws.close_code

    with caplog.at_level(logging.INFO):
        close_code = asyncio.run(main())
    receiver.stop()
    kinds = sorted(body["type"] for _, body in receiver.deliveries)
    assert "alert.raised" in kinds and "stream.summary" in kinds
    assert close_code == 1001
    summary = next(b for _, b in receiver.deliveries if b["type"] == "stream.summary")
    assert summary["data"]["labels"]["call_sid"] == "CA0001" and summary["data"]["labels"]["role"] == "caller"
    lines = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert lines[-1]["type"] == "summary"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_audiohook_gets_disconnect_with_verdicts_on_shutdown(phone_bundle, tmp_path):
    external = mulaw(noise(3.0, 0.3, seed=12))
    client = AudioHookClient()

    async def main():
        server_cm = running(phone_bundle, tmp_path)
        server = await server_cm.__aenter__()
        ws = await connect(url(server, "/audiohook"), proxy=None)
        await ws.send(
            client.open().replace('"channels": ["external", "internal"]', '"channels": ["external"]', 1)
        )
        client.saw(await ws.recv())
        for i in range(0, len(external), 160):
            await ws.send(external[i : i + 160])
        await asyncio.sleep(0.3)
        await server_cm.__aexit__(None, None, None)  # graceful shutdown while the call is live
        messages = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                messages.append(json.loads(await ws.recv()))
        return messages, ws.close_code

    messages, code = asyncio.run(main())
    assert code == 1001
    disconnect = messages[-1]
    assert disconnect["type"] == "disconnect" and disconnect["parameters"]["reason"] == "completed"
    assert disconnect["parameters"]["outputVariables"]["streamGuardExternalVerdict"] == "synthetic"


def test_replayed_file_scores_match_scanning_it_after_the_same_codec(phone_bundle, tmp_path):
    import soundfile as sf
    import soxr

    from stream_guard.bundle import default_bundle_path

    clip = default_bundle_path().parent.parent / "examples" / "formant-vowels.wav"
    x, rate = sf.read(clip, dtype="float32", always_2d=True)
    call = mulaw(soxr.resample(x.mean(axis=1), rate, 8000).astype(np.float32))

    async def main():
        async with running(phone_bundle, tmp_path) as server:
            sub = await subscribe(server)
            async with connect(url(server, "/twilio"), proxy=None) as ws:
                for msg in twilio_call(call, sid="MZfile"):
                    await ws.send(msg)
                got = await events_until_summaries(sub, {"MZfile/inbound"})
            return got, await reference_scores(server, call, AudioFormat(8000, "mulaw"))

    got, ref = asyncio.run(main())
    assert len(ref) >= 5
    assert_same_scores(scores(got["MZfile/inbound"]), ref)
