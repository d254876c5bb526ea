"""Each parser driven by message sequences shaped exactly as the platform sends them (telephony.md)."""

from __future__ import annotations

import json
import random
from array import array

import pytest

from stream_guard.events import SummaryEvent
from stream_guard.protocols import (
    Audio,
    EndSession,
    Notice,
    ProtocolError,
    Reply,
    StartStream,
    StopStream,
    WireFormat,
    make_parser,
)
from stream_guard.protocols.sequencing import Reorderer
from stream_guard.protocols.simulators import (
    AudioHookClient,
    exotel_call,
    plivo_call,
    telnyx_call,
    twilio_call,
    vonage_hello,
)


def run(parser, messages):
    actions = []
    for m in messages:
        actions += parser.receive_text(m) if isinstance(m, str) else parser.receive_binary(m)
    return actions


def audio_of(actions, sid):
    return b"".join(a.data for a in actions if isinstance(a, Audio) and a.stream_id == sid)


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def test_twilio_both_tracks_become_two_streams():
    rng = random.Random(1)
    caller = bytes(rng.randrange(256) for _ in range(1600))
    agent = bytes(rng.randrange(256) for _ in range(1200))
    actions = run(make_parser("twilio", "c1"), twilio_call(caller, agent))
    starts = of(actions, StartStream)
    assert [s.stream_id for s in starts] == ["MZ0001/inbound", "MZ0001/outbound"]
    assert starts[0].fmt == WireFormat(8000, "mulaw", 1)
    assert starts[0].labels["role"] == "caller" and starts[1].labels["role"] == "agent"
    assert starts[0].labels["call_sid"] == "CA0001"
    assert starts[0].labels["param.from_number"] == "+15550001"
    assert audio_of(actions, "MZ0001/inbound") == caller
    assert audio_of(actions, "MZ0001/outbound") == agent
    assert sorted(s.stream_id for s in of(actions, StopStream)) == ["MZ0001/inbound", "MZ0001/outbound"]
    assert not of(actions, ProtocolError)


def test_twilio_sequence_gap_is_counted_and_repeat_dropped():
    msgs = list(twilio_call(b"\xff" * 800))
    parser = make_parser("twilio", "c1")
    actions = run(parser, msgs[:3] + msgs[4:5] + msgs[4:5] + msgs[5:])
    kinds = [n.kind for n in of(actions, Notice)]
    assert "sequence_gap" in kinds and "sequence_repeat" in kinds
    assert len(audio_of(actions, "MZ0001/inbound")) == 800 - 160
    assert parser.stats["gaps"] == 1 and parser.stats["repeats"] == 1


def test_twilio_media_on_unannounced_track_is_rejected():
    msgs = list(twilio_call(b"\x00" * 160, b"\x00" * 160))
    start = json.loads(msgs[1])
    start["start"]["tracks"] = ["inbound"]
    actions = run(make_parser("twilio", "c1"), [msgs[0], json.dumps(start), *msgs[2:]])
    err = of(actions, ProtocolError)
    assert err and err[0].code == 1002 and "outbound" in err[0].reason


def test_telnyx_out_of_order_frames_are_reordered():
    rng = random.Random(2)
    payload = bytes(rng.randrange(256) for _ in range(160 * 40))
    msgs = telnyx_call(payload)
    body = msgs[1:-1]
    # shuffle within windows of 5 messages: later frames overtake earlier ones
    shuffled = []
    for i in range(0, len(body), 5):
        chunk = body[i : i + 5]
        rng.shuffle(chunk)
        shuffled += chunk
    parser = make_parser("telnyx", "c1")
    actions = run(parser, [msgs[0], *shuffled, msgs[-1]])
    assert not of(actions, ProtocolError)
    assert audio_of(actions, "32DE0DEA-53CB/inbound") == payload
    assert parser.stats["reordered"] > 0 and parser.stats["gaps"] == 0
    assert [s.stream_id for s in of(actions, StopStream)] == ["32DE0DEA-53CB/inbound"]


def test_telnyx_lost_frame_is_skipped_after_depth():
    payload = bytes(range(160)) * 30
    msgs = telnyx_call(payload)
    lost = msgs[5]
    actions = run(make_parser("telnyx", "c1"), [m for m in msgs if m is not lost])
    got = audio_of(actions, "32DE0DEA-53CB/inbound")
    assert len(got) == len(payload) - 160
    assert any(n.kind == "sequence_gap" for n in of(actions, Notice))


def test_telnyx_l16_is_swapped_from_network_order():
    samples = array("h", [1, -2, 300, -32768])
    big = array("h", samples)
    big.byteswap()  # what RTP carries
    msgs = telnyx_call(big.tobytes(), frame=8, codec="L16")
    actions = run(make_parser("telnyx", "c1"), msgs)
    assert of(actions, StartStream)[0].fmt == WireFormat(8000, "pcm16")
    assert audio_of(actions, "32DE0DEA-53CB/inbound") == samples.tobytes()


def test_telnyx_unsupported_codec_is_a_clear_reject():
    msgs = telnyx_call(b"\x00" * 160, codec="OPUS")
    err = of(run(make_parser("telnyx", "c1"), msgs), ProtocolError)
    assert err[0].code == 4415 and "OPUS" in err[0].reason


def test_plivo_l16_and_mulaw():
    pcm = array("h", range(-800, 800)).tobytes()
    actions = run(make_parser("plivo", "c1"), plivo_call(pcm, "audio/x-l16", 16000))
    assert of(actions, StartStream)[0].fmt == WireFormat(16000, "pcm16")
    assert of(actions, StartStream)[0].labels["header.queue"] == "sales"
    assert audio_of(actions, "s-1/inbound") == pcm
    actions = run(make_parser("plivo", "c1"), plivo_call(b"\x7f" * 480, "audio/x-mulaw", 8000, frame=160))
    assert of(actions, StartStream)[0].fmt == WireFormat(8000, "mulaw")


def test_plivo_falls_back_to_the_configured_content_type():
    msgs = list(plivo_call(b"\x00" * 640))
    start = json.loads(msgs[0])
    del start["start"]["mediaFormat"]
    parser = make_parser("plivo", "c1", content_type="audio/x-l16;rate=16000")
    actions = run(parser, [json.dumps(start), *msgs[1:]])
    assert of(actions, StartStream)[0].fmt == WireFormat(16000, "pcm16")


def test_exotel_single_stream_pcm16():
    pcm = array("h", [7] * 2400).tobytes()
    actions = run(make_parser("exotel", "c1"), exotel_call(pcm))
    start = of(actions, StartStream)[0]
    assert start.stream_id == "MZex01/inbound" and start.fmt == WireFormat(8000, "pcm16")
    assert start.labels["param.key1"] == "value1"
    assert audio_of(actions, "MZex01/inbound") == pcm
    assert of(actions, StopStream)


def test_exotel_odd_payload_is_rejected():
    msgs = list(exotel_call(b"\x00" * 3))
    err = of(run(make_parser("exotel", "c1"), msgs), ProtocolError)
    assert err[0].code == 1007 and "whole number" in err[0].reason


def test_vonage_binary_l16():
    parser = make_parser("vonage", "conn-7")
    actions = parser.receive_text(vonage_hello(16000))
    assert of(actions, StartStream)[0].stream_id == "vg-call-1"
    assert of(actions, StartStream)[0].fmt == WireFormat(16000, "pcm16")
    frame = array("h", range(320)).tobytes()
    assert parser.receive_binary(frame) == [Audio("vg-call-1", frame)]
    assert of(parser.receive_text(json.dumps({"event": "websocket:dtmf", "digit": "5"})), Notice)
    assert of(parser.receive_eof(), StopStream)


def test_vonage_binary_before_hello_is_rejected():
    err = make_parser("vonage", "c").receive_binary(b"\x00\x00")
    assert err[0].code == 1002


def test_audiohook_session():
    client = AudioHookClient()
    parser = make_parser("audiohook", "c1")
    actions = parser.receive_text(client.open())
    starts = of(actions, StartStream)
    sid = client.session
    assert [s.stream_id for s in starts] == [f"{sid}/external", f"{sid}/internal"]
    assert starts[0].labels["role"] == "customer" and starts[1].labels["role"] == "agent"
    opened = client.saw(of(actions, Reply)[0].message)
    assert opened["type"] == "opened" and opened["clientseq"] == 1 and opened["seq"] == 1
    assert opened["parameters"]["media"][0]["channels"] == ["external", "internal"]
    pong = client.saw(of(parser.receive_text(client.msg("ping", rtt="PT0.05S")), Reply)[0].message)
    assert pong["type"] == "pong" and pong["clientseq"] == 2
    stereo = bytes([1, 2] * 160)
    got = parser.receive_binary(stereo)
    assert got == [Audio(f"{sid}/external", b"\x01" * 160), Audio(f"{sid}/internal", b"\x02" * 160)]
    parser.receive_text(client.msg("paused"))
    assert of(parser.receive_binary(stereo), Notice)
    parser.receive_text(client.msg("resumed", start="PT1S", discarded="PT0S"))
    assert len(of(parser.receive_binary(stereo), Audio)) == 2
    end = parser.receive_text(client.msg("close", reason="end"))
    assert of(end, EndSession)
    stops = parser.end_streams()
    assert {s.stream_id for s in stops} == {f"{sid}/external", f"{sid}/internal"}
    summaries = {
        f"{sid}/external": SummaryEvent(f"{sid}/external", verdict="synthetic", probability=0.93, alerts=1),
        f"{sid}/internal": SummaryEvent(f"{sid}/internal", verdict="real", probability=0.05),
    }
    closed = json.loads(parser.session_ended(summaries)[0].message)
    assert closed["type"] == "closed" and closed["clientseq"] == 5
    out = closed["parameters"]["outputVariables"]
    assert out["streamGuardVerdict"] == "synthetic"
    assert out["streamGuardExternalVerdict"] == "synthetic" and out["streamGuardInternalVerdict"] == "real"
    assert out["streamGuardExternalProbability"] == "0.9300"


def test_audiohook_l16_stereo_split():
    client = AudioHookClient(fmt="L16")
    parser = make_parser("audiohook", "c1")
    parser.receive_text(client.open())
    frames = array("h", [100, -100] * 80).tobytes()
    got = parser.receive_binary(frames)
    assert got[0].data == array("h", [100] * 80).tobytes()
    assert got[1].data == array("h", [-100] * 80).tobytes()


def test_audiohook_probe_opens_no_streams():
    client = AudioHookClient()
    parser = make_parser("audiohook", "c1")
    actions = parser.receive_text(client.open(conversation="00000000-0000-0000-0000-000000000000"))
    assert not of(actions, StartStream) and of(actions, Reply)


def test_audiohook_bad_seq_sends_disconnect_then_closes():
    client = AudioHookClient()
    parser = make_parser("audiohook", "c1")
    parser.receive_text(client.open())
    client.seq += 3
    actions = parser.receive_text(client.msg("ping"))
    assert json.loads(actions[0].message)["type"] == "disconnect"
    assert actions[1].code == 1002


def test_audiohook_no_supported_media():
    msg = json.loads(AudioHookClient().open())
    for m in msg["parameters"]["media"]:
        m["format"] = "OPUS"
    actions = make_parser("audiohook", "c1").receive_text(json.dumps(msg))
    assert of(actions, ProtocolError)[0].code == 4415


def test_native_protocol():
    parser = make_parser("native", "c1")
    start = {
        "type": "start",
        "stream": "call-1",
        "sample_rate": 16000,
        "encoding": "float32",
        "labels": {"a": 1},
    }
    actions = parser.receive_text(json.dumps(start))
    assert of(actions, StartStream)[0] == StartStream(
        "call-1", WireFormat(16000, "float32"), {"protocol": "native", "a": "1"}
    )
    assert json.loads(of(actions, Reply)[0].message) == {"type": "started", "stream": "call-1", "v": 1}
    assert parser.receive_binary(b"\x00" * 8) == [Audio("call-1", b"\x00" * 8)]
    assert of(parser.receive_binary(b"\x00" * 6), ProtocolError)[0].code == 1007


def test_native_stop_then_new_stream():
    parser = make_parser("native", "c1")
    parser.receive_text(json.dumps({"type": "start", "stream": "a", "sample_rate": 8000}))
    assert parser.receive_text(json.dumps({"type": "stop"})) == [StopStream("a", "stop")]
    assert of(
        parser.receive_text(json.dumps({"type": "start", "stream": "b", "sample_rate": 8000})), StartStream
    )


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        (["{not json"], 1007),
        (["[1, 2]"], 1007),
        ([b"\x00\x01"], 1002),
        (['{"type": "start", "stream": "x", "sample_rate": "fast"}'], 1007),
        (['{"type": "start", "stream": "x", "sample_rate": 8000, "encoding": "mp3"}'], 1007),
        (['{"type": "dance"}'], 1002),
        (['{"type": "start", "stream": "x", "sample_rate": 8000, "channels": 99}'], 4415),
    ],
)
def test_native_bad_input(messages, code):
    parser = make_parser("native", "c1")
    actions = run(parser, messages)
    assert of(actions, ProtocolError)[0].code == code
    assert parser.failed and parser.receive_text('{"type": "stop"}') == []


@pytest.mark.parametrize(
    ("protocol", "messages", "code"),
    [
        ("twilio", ['{"event": "media", "media": {"payload": "AAAA"}}'], 1002),
        ("twilio", ['{"event": "teleport"}'], 1002),
        (
            "twilio",
            [
                list(twilio_call(b"\x00" * 160))[1],
                '{"event":"media","streamSid":"MZ0001","media":{"payload":"!!"}}',
            ],
            1007,
        ),
        ("telnyx", ['{"event": "start", "sequence_number": "x1", "stream_id": "s", "start": {}}'], 1007),
        ("exotel", [b"\x00"], 1003),
        ("audiohook", ['{"version": "1", "type": "open"}'], 1002),
    ],
)
def test_telephony_bad_input(protocol, messages, code):
    actions = run(make_parser(protocol, "c1"), messages)
    assert of(actions, ProtocolError)[0].code == code


@pytest.mark.parametrize(
    ("messages", "protocol"),
    [
        (list(twilio_call(b"\x00" * 160)), "twilio"),
        (telnyx_call(b"\x00" * 160), "telnyx"),
        (list(plivo_call(b"\x00" * 320)), "plivo"),
        (list(exotel_call(b"\x00" * 320)), "exotel"),
        ([vonage_hello()], "vonage"),
        ([AudioHookClient().open()], "audiohook"),
        (['{"type": "start", "stream": "s", "sample_rate": 8000}'], "native"),
    ],
)
def test_auto_detection(messages, protocol):
    parser = make_parser("auto", "c1")
    actions = run(parser, messages)
    assert parser.protocol == protocol
    assert of(actions, StartStream) and not of(actions, ProtocolError)


def test_auto_detection_refuses_unknown_and_binary_first():
    assert make_parser("auto", "c").receive_text('{"hello": 1}')[0].code == 1002
    assert make_parser("auto", "c").receive_binary(b"\x00")[0].code == 1003


def test_reorderer_flush_releases_in_order():
    r = Reorderer(depth=10)
    assert r.push(3, "c") == ([], [])
    assert r.push(2, "b") == ([], [])
    out, notices = r.flush()
    assert out == ["b", "c"] and notices[0].kind == "sequence_gap"


def test_audiohook_goodbye_on_server_shutdown():
    client = AudioHookClient()
    parser = make_parser("audiohook", "c1")
    parser.receive_text(client.open())
    sid = f"{client.session}/external"
    bye = parser.goodbye({sid: SummaryEvent(sid, verdict="real", probability=0.1)})
    msg = json.loads(bye[0].message)
    assert msg["type"] == "disconnect" and msg["parameters"]["reason"] == "completed"
    assert msg["parameters"]["outputVariables"]["streamGuardVerdict"] == "real"
    assert parser.goodbye({}) == []  # only once
    assert make_parser("twilio", "c").goodbye({}) == []
