"""The sans-I/O half of the WebRTC ingest: signalling messages, offers and candidates, without sockets."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_guard.sources.webrtc import (
    SignallingError,
    WebRTCConfig,
    loopback_candidates,
    parse_candidate,
    parse_message,
    parse_offer,
)

CONFIG = WebRTCConfig(loopback=True)


def offer_sdp(kinds: list[str], codecs: list[str] | None = None) -> str:
    from aiortc import RTCPeerConnection, RTCRtpSender

    async def make() -> str:
        pc = RTCPeerConnection()
        for kind in kinds:
            if kind == "data":
                pc.createDataChannel("d")
                continue
            t = pc.addTransceiver(kind, direction="sendonly")
            if codecs and kind == "audio":
                caps = RTCRtpSender.getCapabilities("audio").codecs
                t.setCodecPreferences([c for c in caps if c.name in codecs])
        with loopback_candidates():
            await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(make())


@pytest.fixture(scope="module")
def two_audio() -> str:
    return offer_sdp(["audio", "audio"])


def test_offer_with_labels(two_audio):
    msg = {
        "type": "offer",
        "sdp": two_audio,
        "tracks": {"0": {"participant": "al ice!", "label": "Alice"}, "1": {"participant": "bob"}},
    }
    offer = parse_offer(msg, CONFIG)
    assert offer.audio_mids == ("0", "1")
    assert offer.tracks["0"].participant == "al-ice"  # ids keep to letters, digits, . _ -
    assert offer.tracks["0"].label == "Alice"
    assert offer.tracks["1"].label == "bob"
    assert offer.default is None


def test_loopback_offer_has_only_the_loopback_candidate(two_audio):
    candidates = [line for line in two_audio.split("\r\n") if line.startswith("a=candidate:")]
    assert candidates and all(" 127.0.0.1 " in line for line in candidates)


@pytest.mark.parametrize(
    ("kinds", "codecs", "code"),
    [
        (["data"], None, "no_audio"),
        (["audio", "video"], None, "unsupported_media"),
        (["audio"] * 9, None, "too_many_tracks"),
    ],
)
def test_offers_refused(kinds, codecs, code):
    with pytest.raises(SignallingError) as err:
        parse_offer({"type": "offer", "sdp": offer_sdp(kinds, codecs)}, CONFIG)
    assert err.value.code == code and err.value.message


def test_codec_restriction():
    sdp = offer_sdp(["audio"], ["PCMA"])
    assert parse_offer({"type": "offer", "sdp": sdp}, CONFIG).audio_mids == ("0",)
    with pytest.raises(SignallingError) as err:
        parse_offer({"type": "offer", "sdp": sdp}, WebRTCConfig(codecs=("opus",)))
    assert err.value.code == "no_common_codec" and "pcma" in err.value.message


@pytest.mark.parametrize(
    ("raw", "code", "close"),
    [
        (b"\x00", "bad_message", 1003),
        ("[1, 2]", "bad_message", 1007),
        ('{"type": 3}', "bad_message", 1007),
        ("nope", "bad_message", 1007),
        ("x" * 200_000, "too_big", 1009),
    ],
)
def test_bad_messages(raw, code, close):
    with pytest.raises(SignallingError) as err:
        parse_message(raw, CONFIG.max_message_bytes)
    assert (err.value.code, err.value.close) == (code, close)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300), st.from_regex(r"v=0\r\n[ -~\r\n]{0,200}")))
def test_any_input_is_a_message_or_a_signalling_error(raw):
    """Whatever a peer sends, parsing answers with a message or a SignallingError: never another exception."""
    try:
        msg = parse_message(raw, CONFIG.max_message_bytes)
    except SignallingError:
        return
    assert isinstance(msg, dict) and isinstance(msg["type"], str)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"v=0\r\n[ -~\r\n]{0,400}", fullmatch=True))
def test_any_sdp_is_an_offer_or_a_clear_refusal(sdp):
    try:
        parse_offer({"type": "offer", "sdp": sdp}, CONFIG)
    except SignallingError as err:
        assert err.code in {"bad_sdp", "no_audio", "unsupported_media", "too_many_tracks", "no_common_codec"}


def test_candidates():
    line = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"
    cand = parse_candidate({"candidate": {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}})
    assert (cand.ip, cand.port, cand.sdpMid) == ("127.0.0.1", 50000, "0")
    assert parse_candidate({"candidate": None}) is None
    assert parse_candidate({"candidate": {"candidate": ""}}) is None  # browsers' end-of-candidates
    for bad in (
        {"candidate": 5},
        {"candidate": {"candidate": "candidate:junk"}},
        {"candidate": {"candidate": line}},
    ):
        with pytest.raises(SignallingError) as err:
            parse_candidate(bad)
        assert err.value.code == "bad_candidate"


def test_top_level_participant_names_a_single_track(two_audio):
    offer = parse_offer(
        json.loads(json.dumps({"type": "offer", "sdp": two_audio, "participant": "eve"})), CONFIG
    )
    assert offer.default is not None and offer.default.participant == "eve" and offer.default.label == "eve"
