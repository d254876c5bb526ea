"""``/v1/webrtc`` in ``stream-guard serve``: auth, the server's stream limit, and its sinks."""

from __future__ import annotations

import asyncio
import json
import urllib.request

from rtc_harness import TOKEN, noise, open_peer_connections, other_tasks, running_server, settle, task_names
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from stream_guard.server import Limits
from stream_guard.sources.webrtc import ClientTrack, WebRTCClient, pcm_audio_track

RATE = 48000


def test_webrtc_streams_reach_events_subscribers_and_metrics(bundle_path, tmp_path):
    async def main():
        async with running_server(bundle_path, tmp_path) as server:
            base = f"ws://127.0.0.1:{server.port}"
            events = []

            async def subscribe(ready):
                async with connect(f"{base}/v1/events?prefix=webrtc-&token={TOKEN}", proxy=None) as ws:
                    ready.set()
                    async for raw in ws:
                        ev = json.loads(raw)
                        events.append(ev)
                        if sum(e["type"] == "summary" for e in events) == 2:
                            return

            ready = asyncio.Event()
            subscriber = asyncio.ensure_future(subscribe(ready))
            await ready.wait()
            tracks = [
                ClientTrack(pcm_audio_track(noise(2.5, 0.05, seed=3), RATE), "ann", "Ann"),
                ClientTrack(pcm_audio_track(noise(2.5, 0.5, seed=4), RATE), "ben", "Ben"),
            ]
            async with WebRTCClient(f"{base}/v1/webrtc?token={TOKEN}", tracks, loopback=True) as client:
                async for _ in client.messages():
                    pass
            await asyncio.wait_for(subscriber, 30)
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            url = f"http://127.0.0.1:{server.port}/metrics"
            metrics = await asyncio.to_thread(lambda: opener.open(url).read().decode())
            return events, metrics, dict(server.active)

    events, metrics, active = asyncio.run(main())
    summaries = {e["stream"]: e for e in events if e["type"] == "summary"}
    assert len(summaries) == 2 and all(sid.startswith("webrtc-") for sid in summaries)
    by_participant = {sid.rsplit("-", 1)[-1]: s for sid, s in summaries.items()}
    assert by_participant["ann"]["verdict"] == "real" and by_participant["ben"]["verdict"] == "synthetic"
    assert any(e["type"] == "score" for e in events) and any(e["type"] == "map" for e in events)
    assert 'streamguard_streams_total{protocol="webrtc"} 2.0' in metrics
    assert 'streamguard_active_streams{protocol="webrtc"} 0.0' in metrics
    assert active == {}


def test_webrtc_needs_the_token(bundle_path, tmp_path):
    async def main():
        async with running_server(bundle_path, tmp_path) as server:
            try:
                async with connect(f"ws://127.0.0.1:{server.port}/v1/webrtc", proxy=None):
                    return None
            except InvalidStatus as exc:
                return exc.response.status_code

    assert asyncio.run(main()) == 401


def test_server_stream_limit_refuses_extra_tracks_and_keeps_serving(bundle_path, tmp_path):
    async def main():
        async with running_server(bundle_path, tmp_path, limits=Limits(max_streams=1)) as server:
            url = f"ws://127.0.0.1:{server.port}/v1/webrtc?token={TOKEN}"
            two = [
                ClientTrack(pcm_audio_track(noise(1.0, 0.1), RATE), "a"),
                ClientTrack(pcm_audio_track(noise(1.0, 0.1), RATE), "b"),
            ]
            refused = None
            try:
                await WebRTCClient(url, two, loopback=True).connect()
            except ConnectionError as exc:
                refused = str(exc)
            assert await settle(lambda: server.webrtc.stats()["peers"] == 0 and not server.active)
            one = [ClientTrack(pcm_audio_track(noise(1.0, 0.1), RATE), "solo")]
            async with WebRTCClient(url, one, loopback=True) as client:
                kinds = [m["type"] async for m in client.messages()]
            leaked = not await settle(lambda: open_peer_connections() == 0)
            return refused, kinds, leaked

    refused, kinds, leaked = asyncio.run(main())
    assert refused is not None and "stream_refused" in refused and "capacity" in refused
    assert "stream" in kinds and "event" in kinds and kinds[-1] == "bye"
    assert not leaked


def test_server_shutdown_ends_webrtc_streams_with_summaries(bundle_path, tmp_path):
    async def main():
        async with running_server(bundle_path, tmp_path) as server:
            url = f"ws://127.0.0.1:{server.port}/v1/webrtc?token={TOKEN}"
            track = ClientTrack(pcm_audio_track(noise(30.0, 0.3), RATE), "fay")
            seen = []
            async with WebRTCClient(url, [track], loopback=True) as client:
                stopping = None
                async for msg in client.messages():
                    seen.append(msg)
                    if stopping is None and msg["type"] == "event" and msg["event"]["type"] == "score":
                        stopping = asyncio.ensure_future(server.stop())
                await stopping
            return seen, client.ws.close_code

    seen, close_code = asyncio.run(main())
    summaries = [m for m in seen if m["type"] == "event" and m["event"]["type"] == "summary"]
    kinds = [m["type"] if m["type"] != "event" else m["event"]["type"] for m in seen]
    assert len(summaries) == 1, (" ".join(k[:2] for k in kinds), close_code)
    assert {"type": "bye", "reason": "server_shutdown"} in seen
    assert close_code == 1000


def test_serve_settings_reach_the_gateway(bundle_path, tmp_path):
    async def main():
        async with running_server(
            bundle_path,
            tmp_path,
            ice_servers=("stun:stun.example.org:3478", "turn:u:p@turn.example.org"),
            webrtc_max_peers=3,
        ) as server:
            return server.webrtc.config

    config = asyncio.run(main())
    assert config.loopback  # bound to 127.0.0.1
    assert config.max_peers == 3
    assert config.ice_servers[0].urls == ("stun:stun.example.org:3478",)
    assert (config.ice_servers[1].username, config.ice_servers[1].credential) == ("u", "p")


def test_bad_ice_server_in_serve_config_is_a_config_error():
    import pytest

    from stream_guard.server.config import ConfigError, ServerConfig

    with pytest.raises(ConfigError, match="ICE server 'http://nope'"):
        ServerConfig(auth=False, ice_servers=("http://nope",)).validate()


def test_fifty_peers_at_once_over_the_limit(bundle_path, tmp_path):
    """50 peers connect at once to a server allowing 5: 5 are served, 45 refused with 1013, nothing leaks,
    and the server keeps serving (health, a new peer)."""

    async def main():
        async with running_server(bundle_path, tmp_path, webrtc_max_peers=5) as server:
            baseline_tasks = other_tasks()
            url = f"ws://127.0.0.1:{server.port}/v1/webrtc?token={TOKEN}"
            clients = [
                WebRTCClient(
                    url,
                    [ClientTrack(pcm_audio_track(noise(30.0, 0.05, seed=i), RATE), f"p{i}")],
                    loopback=True,
                )
                for i in range(50)
            ]
            results = await asyncio.gather(*(c.connect() for c in clients), return_exceptions=True)
            accepted = [c for c, r in zip(clients, results, strict=True) if r is None]
            refused = [r for r in results if isinstance(r, ConnectionError)]
            failures = {repr(r)[:200] for r in results if r is not None}
            assert len(accepted) == 5, failures
            assert len(refused) == 45 and all("too_many_peers" in str(r) for r in refused), failures
            assert server.webrtc.counters["rejected_too_many_peers"] == 45
            assert server.webrtc.stats()["peers"] == 5 and len(server.active) == 5
            closed = [c for c, r in zip(clients, results, strict=True) if r is not None]
            assert await settle(lambda: all(c.ws.close_code == 1013 for c in closed))

            await asyncio.gather(*(c.close() for c in clients))
            assert await settle(lambda: server.webrtc.stats()["peers"] == 0)
            assert await settle(lambda: open_peer_connections() == 0)
            assert await settle(lambda: other_tasks() <= baseline_tasks), task_names()
            assert server.active == {} and server.engine.stats()["streams_open"] == 0
            assert server.engine.stats()["streams_closed"] == 5  # every accepted stream was summarised

            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            health = f"http://127.0.0.1:{server.port}/healthz"
            assert await asyncio.to_thread(lambda: opener.open(health).read()) == b"ok\n"
            track = pcm_audio_track(noise(1.0, 0.5), RATE)
            async with WebRTCClient(url, [ClientTrack(track, "late")], loopback=True) as late:
                kinds = [m["type"] async for m in late.messages()]
            assert "stream" in kinds and "event" in kinds and kinds[-1] == "bye"

    asyncio.run(main())
