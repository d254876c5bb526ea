"""WebRTC ingest end to end with aiortc clients on loopback: real peers, real engine, real websockets."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from rtc_harness import noise, open_peer_connections, other_tasks, running_gateway, settle, task_names
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from stream_guard.events import SummaryEvent
from stream_guard.sources.webrtc import (
    ClientTrack,
    WebRTCClient,
    WebRTCConfig,
    loopback_candidates,
    pcm_audio_track,
)

RATE = 48000


def test_two_participants_are_scored_as_two_streams(bundle_path):
    """One peer, two tracks (G.711 mu-law and Opus): two streams, each with its own scores and summary."""

    quiet = noise(3.0, 0.05, seed=1)
    loud = noise(3.0, 0.5, seed=2)

    async def main():
        async with running_gateway(bundle_path) as h:
            tracks = [
                ClientTrack(pcm_audio_track(quiet, RATE), "alice", "Alice A.", codec="PCMU"),
                ClientTrack(pcm_audio_track(loud, RATE), "bob", "Bob B."),
            ]
            messages = []
            async with WebRTCClient(h.url, tracks, loopback=True) as client:
                async for msg in client.messages():
                    messages.append(msg)
            return h, messages

    h, messages = asyncio.run(main())
    streams = {m["participant"]: m for m in messages if m["type"] == "stream"}
    assert set(streams) == {"alice", "bob"}
    assert streams["alice"]["label"] == "Alice A." and streams["bob"]["label"] == "Bob B."
    assert streams["alice"]["codec"] == "PCMU" and streams["bob"]["codec"] == "opus"
    alice, bob = streams["alice"]["stream"], streams["bob"]["stream"]
    assert alice != bob

    events = [m["event"] for m in messages if m["type"] == "event"]
    by_stream = {sid: [e for e in events if e["stream"] == sid] for sid in (alice, bob)}
    for sid, evs in by_stream.items():
        scores = [e for e in evs if e["type"] == "score"]
        assert len(scores) >= 3, f"{sid}: only {len(scores)} scores"
        assert evs[-1]["type"] == "summary", f"{sid}: the summary must come last"
        assert any(e["type"] == "map" for e in evs), f"{sid}: no anomaly-map columns"
    # the test bundle scores by level: the quiet participant is 'real', the loud one 'synthetic'
    assert by_stream[alice][-1]["verdict"] == "real"
    assert by_stream[bob][-1]["verdict"] == "synthetic"
    # about 3 s of audio each reached the engine (a little is lost while ICE/DTLS come up)
    for sid in (alice, bob):
        assert 2.0 <= by_stream[sid][-1]["duration_s"] <= 3.3
    ends = {m["stream"]: m["reason"] for m in messages if m["type"] == "stream_end"}
    assert ends == {alice: "stalled", bob: "stalled"}  # the tracks stopped sending; the peer stayed
    assert messages[-1]["type"] == "bye"

    # the same events went to the gateway's subscribers (the server's /v1/events)
    published = {(e.stream, e.type) for e in h.events}
    assert {(alice, "summary"), (bob, "summary"), (alice, "score"), (bob, "score")} <= published

    # levels survive the codecs: what reached the engine has the RMS of the sent noise within its band
    # (G.711 carries up to 4 kHz; Opus more than the 8 kHz that a 16 kHz stream keeps)
    for sid, sent, band_hz in ((alice, quiet, 4000), (bob, loud, 8000)):
        got = h.received(sid)
        level = float(np.sqrt(np.mean(got[16000:-1600] ** 2)))
        expected = band_rms(sent, RATE, band_hz)
        assert abs(level / expected - 1) < 0.15, f"{sid}: RMS {level:.4f}, sent {expected:.4f} in band"


def band_rms(x: np.ndarray, rate: int, high_hz: float) -> float:
    """RMS of ``x`` after an ideal low-pass at ``high_hz``."""
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(len(x), 1 / rate) > high_hz] = 0
    return float(np.sqrt(np.mean(np.fft.irfft(spec, len(x)) ** 2)))


async def _exchange(url: str, messages: list, wait_s: float = 5.0) -> tuple[list[dict], int | None]:
    """Send raw messages on a signalling websocket; return what came back and the close code."""
    got: list[dict] = []
    async with connect(url, proxy=None) as ws:
        for m in messages:
            await ws.send(m)
        try:
            while True:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), wait_s)))
        except ConnectionClosed:
            pass
        return got, ws.close_code


async def _offer_sdp(kinds: list[str]) -> str:
    """A real offer from aiortc with the given transceivers ('audio', 'video') or a data channel ('data')."""
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    for kind in kinds:
        if kind == "data":
            pc.createDataChannel("chat")
        else:
            pc.addTransceiver(kind, direction="sendonly")
    with loopback_candidates():
        await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def test_bad_signalling_is_refused_clearly_and_the_server_keeps_serving(bundle_path):
    """Malformed SDP, offers without audio, video, junk messages, no offer: one clear error each, no leaks."""

    async def main():
        config = WebRTCConfig(loopback=True, offer_timeout_s=1.0, stall_timeout_s=1.0)
        async with running_gateway(bundle_path, config) as h:
            baseline_tasks = other_tasks()
            audio = await _offer_sdp(["audio"])
            no_fingerprint = "\r\n".join(
                line for line in audio.split("\r\n") if not line.startswith("a=fingerprint")
            )
            offer = lambda sdp, **kw: json.dumps({"type": "offer", "sdp": sdp, **kw})  # noqa: E731
            cases = {
                "not json": (["{nope"], "bad_message", 1007),
                "binary": ([b"\x00\x01"], "bad_message", 1003),
                "no type": ([json.dumps({"sdp": audio})], "bad_message", 1007),
                "garbage sdp": ([offer("hello, this is not SDP")], "bad_sdp", 1008),
                "broken sdp": ([offer("v=0\r\no=- x\r\nm=audio\r\n")], "bad_sdp", 1008),
                "no fingerprint": ([offer(no_fingerprint)], "bad_sdp", 1008),
                "data channel only": ([offer(await _offer_sdp(["data"]))], "no_audio", 4415),
                "video": ([offer(await _offer_sdp(["audio", "video"]))], "unsupported_media", 4415),
                "bad participant": ([offer(audio, participant="   ")], "bad_message", 1008),
                "candidate first": ([json.dumps({"type": "candidate"})], "bad_message", 1008),
                "silence": ([], "timeout", 4408),
            }
            results = {}
            for name, (msgs, _, _) in cases.items():
                results[name] = await _exchange(h.url, msgs)
            for name, (_, code, close) in cases.items():
                got, close_code = results[name]
                errors = [m for m in got if m["type"] == "error"]
                assert len(errors) == 1 and errors[0]["code"] == code and errors[0]["fatal"], (name, got)
                assert errors[0]["message"], name
                assert close_code == close, (name, close_code)
                assert not any(m["type"] == "answer" for m in got), name
            assert h.gateway.counters["rejected_bad_sdp"] == 3

            # nothing is left behind, and a good client is still served
            assert await settle(lambda: h.gateway.stats()["peers"] == 0)
            assert await settle(lambda: open_peer_connections() == 0)
            assert await settle(lambda: other_tasks() <= baseline_tasks), task_names()
            track = pcm_audio_track(noise(1.5, 0.5), RATE)
            async with WebRTCClient(h.url, [ClientTrack(track, "carol")], loopback=True) as client:
                kinds = [m["type"] async for m in client.messages()]
            assert "stream" in kinds and "event" in kinds and kinds[-1] == "bye"

    asyncio.run(main())


def test_abrupt_disconnect_ends_the_streams_with_a_summary(bundle_path):
    """A client that vanishes (websocket torn down, no bye, its media still flowing) ends its streams."""

    async def main():
        async with running_gateway(bundle_path) as h:
            baseline_tasks = other_tasks()
            track = pcm_audio_track(noise(20.0, 0.5), RATE)
            client = WebRTCClient(h.url, [ClientTrack(track, "dave")], loopback=True)
            await client.connect()
            scores = 0
            async for msg in client.messages():
                if msg["type"] == "event" and msg["event"]["type"] == "score":
                    scores += 1
                    if scores == 2:
                        break
            client.ws.transport.abort()  # a crash: no close frame, no bye; the media keeps flowing
            sid = next(iter(client.streams))
            ended = lambda: any(isinstance(e, SummaryEvent) and e.stream == sid for e in h.events)  # noqa: E731
            assert await settle(ended)
            summary = next(e for e in h.events if isinstance(e, SummaryEvent) and e.stream == sid)
            assert summary.windows >= 2 and summary.duration_s > 0.5
            assert await settle(lambda: h.gateway.stats()["peer_connections"] == 0)
            assert h.gateway.counters.get("streams_ended_closed") == 1
            await client.close()
            assert await settle(lambda: open_peer_connections() == 0)
            assert await settle(lambda: other_tasks() <= baseline_tasks), task_names()
            assert h.engine.stats()["streams_open"] == 0

    asyncio.run(main())


@pytest.mark.parametrize("spec", ["stun:stun.example.org:3478", "turn:user:secret@turn.example.org:3478"])
def test_ice_server_specs_parse(spec):
    from stream_guard.sources.webrtc import IceServer

    server = IceServer.parse(spec)
    assert server.urls[0].endswith("example.org:3478")
    if spec.startswith("turn"):
        assert (server.username, server.credential) == ("user", "secret")
        assert server.urls == ("turn:turn.example.org:3478",)


@pytest.mark.parametrize("spec", ["", "http://x", "stun:", "turn"])
def test_bad_ice_server_specs_are_refused(spec):
    from stream_guard.sources.webrtc import IceServer

    with pytest.raises(ValueError, match="ICE server"):
        IceServer.parse(spec)


def test_sender_closing_its_peer_connection_ends_the_stream(bundle_path):
    """The remote side closes its peer connection but keeps the websocket: the stream ends as 'ended'."""

    async def main():
        async with running_gateway(bundle_path) as h:
            track = pcm_audio_track(noise(20.0, 0.3), RATE)
            client = WebRTCClient(h.url, [ClientTrack(track, "erin")], loopback=True)
            await client.connect()
            seen = []
            async for msg in client.messages():
                seen.append(msg)
                if msg["type"] == "event" and msg["event"]["type"] == "score" and client.pc is not None:
                    await client.pc.close()
                    client.pc = None
            await client.close()
            return seen, h

    seen, h = asyncio.run(main())
    ends = [m for m in seen if m["type"] == "stream_end"]
    assert len(ends) == 1 and ends[0]["reason"] == "ended"
    summaries = [m["event"] for m in seen if m["type"] == "event" and m["event"]["type"] == "summary"]
    assert len(summaries) == 1 and summaries[0]["windows"] >= 1
    assert seen[-1] == {"type": "bye", "reason": "closed"}
    assert h.gateway.stats()["peer_connections"] == 0


def test_peer_that_never_connects_is_dropped(bundle_path):
    """An offer whose sender never answers ICE checks: ``ice_failed`` after the connect timeout, no leaks."""

    async def main():
        config = WebRTCConfig(loopback=True, connect_timeout_s=1.5)
        async with running_gateway(bundle_path, config) as h:
            sdp = await _offer_sdp(["audio"])  # its peer connection is already closed: nobody answers
            got, close_code = await _exchange(h.url, [json.dumps({"type": "offer", "sdp": sdp})], wait_s=20)
            assert await settle(lambda: h.gateway.stats()["peer_connections"] == 0)
            summaries = [e for e in h.events if isinstance(e, SummaryEvent)]
            return got, close_code, summaries

    got, close_code, summaries = asyncio.run(main())
    kinds = [m["type"] for m in got]
    assert kinds[:2] == ["answer", "stream"]
    errors = [m for m in got if m["type"] == "error"]
    assert len(errors) == 1 and errors[0]["code"] == "ice_failed"
    assert close_code == 1013
    assert len(summaries) == 1 and summaries[0].windows == 0  # the stream still ends with its summary


def test_a_slow_consumer_never_lets_the_receive_queue_grow(bundle_path):
    """If feeding the engine stalls, aiortc's unbounded queue stays drained and the backlog drops oldest."""
    from websockets.asyncio.server import serve

    from stream_guard.backends import OnnxRuntimeBackend
    from stream_guard.engine import Engine
    from stream_guard.sources.webrtc import WebRTCGateway, engine_opener

    class SlowFeed:
        """A real engine stream whose feed takes 200 ms, ten times the frame rate (an overloaded host)."""

        def __init__(self, stream):
            self.stream = stream

        async def feed(self, data):
            await asyncio.sleep(0.2)
            return await self.stream.feed(data)

        def events(self):
            return self.stream.events()

        async def close(self):
            return await self.stream.close()

    async def main():
        backend = OnnxRuntimeBackend(bundle_path, provider="cpu", threads=1)
        async with Engine(backend, owns_backend=True) as engine:
            real = engine_opener(engine)

            async def slow_opener(stream_id, rate, labels):
                return SlowFeed(await real(stream_id, rate, labels))

            config = WebRTCConfig(loopback=True, backlog_frames=10, stall_timeout_s=1.0)
            gateway = WebRTCGateway(slow_opener, config)
            depth = []

            async def sample():
                while True:
                    for session in list(gateway.sessions):
                        for slot in session.slots:
                            depth.append(slot.ingest.track._queue.qsize())  # aiortc's receive queue
                    await asyncio.sleep(0.05)

            sampler = asyncio.ensure_future(sample())
            async with serve(gateway.handle, "127.0.0.1", 0) as server:
                url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
                track = pcm_audio_track(noise(4.0, 0.3), RATE)
                async with WebRTCClient(url, [ClientTrack(track, "slow")], loopback=True) as client:
                    ends = [m async for m in client.messages() if m["type"] == "stream_end"]
            sampler.cancel()
            return depth, ends[0]

    depth, end = asyncio.run(main())
    assert len(depth) >= 40
    assert end["frames"] >= 150  # ~4 s of 20 ms frames were received...
    assert end["frames_dropped"] >= 100  # ...but most could not be fed in time: dropped, oldest first
    assert max(depth) <= 5, depth  # and aiortc's own queue never grew
