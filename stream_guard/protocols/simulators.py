"""Platform simulators: message sequences shaped exactly as each platform sends them (telephony.md).

Used by the tests, the load benchmark and the example client to replay a recording as if a platform were
streaming a live call, so an integration can be checked end to end before a real call is placed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def twilio_call(
    inbound: bytes, outbound: bytes | None = None, sid: str = "MZ0001", frame: int = 160
) -> Iterator[str]:
    """connected, start, interleaved 20 ms media per track (both_tracks when ``outbound`` is given), stop."""
    tracks = ["inbound"] if outbound is None else ["inbound", "outbound"]
    yield json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    yield json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": sid,
            "start": {
                "streamSid": sid,
                "accountSid": "AC0001",
                "callSid": "CA0001",
                "tracks": tracks,
                "customParameters": {"from_number": "+15550001"},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )
    seq = 2
    n = max(len(inbound), len(outbound or b""))
    for i, off in enumerate(range(0, n, frame)):
        for track, data in (("inbound", inbound), ("outbound", outbound)):
            if data is None or off >= len(data):
                continue
            yield json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": str(seq),
                    "streamSid": sid,
                    "media": {
                        "track": track,
                        "chunk": str(i + 1),
                        "timestamp": str(i * 20),
                        "payload": b64(data[off : off + frame]),
                    },
                }
            )
            seq += 1
    yield json.dumps(
        {
            "event": "stop",
            "sequenceNumber": str(seq),
            "streamSid": sid,
            "stop": {"accountSid": "AC0001", "callSid": "CA0001"},
        }
    )


def telnyx_call(
    payload: bytes, sid: str = "32DE0DEA-53CB", frame: int = 160, codec: str = "PCMU"
) -> list[str]:
    """connected, start, media (in order), stop: the caller shuffles them to test reordering."""
    msgs = [json.dumps({"event": "connected", "version": "1.0.0"})]
    msgs.append(
        json.dumps(
            {
                "event": "start",
                "sequence_number": "1",
                "stream_id": sid,
                "start": {
                    "call_control_id": "v3:abc",
                    "client_state": "",
                    "from": "+15550001",
                    "to": "+15550002",
                    "media_format": {"encoding": codec, "sample_rate": 8000, "channels": 1},
                },
            }
        )
    )
    seq = 2
    for i, off in enumerate(range(0, len(payload), frame)):
        msgs.append(
            json.dumps(
                {
                    "event": "media",
                    "sequence_number": str(seq),
                    "stream_id": sid,
                    "media": {
                        "track": "inbound",
                        "chunk": str(i + 1),
                        "timestamp": str(i * 20),
                        "payload": b64(payload[off : off + frame]),
                    },
                }
            )
        )
        seq += 1
    msgs.append(json.dumps({"event": "stop", "sequence_number": str(seq), "stream_id": sid, "stop": {}}))
    return msgs


def plivo_call(
    payload: bytes, content_type: str = "audio/x-l16", rate: int = 8000, frame: int = 320
) -> Iterator[str]:
    yield json.dumps(
        {
            "sequenceNumber": 0,
            "event": "start",
            "start": {
                "callId": "c0ffee",
                "streamId": "s-1",
                "accountId": "MA01",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": content_type, "sampleRate": rate},
            },
            "extra_headers": "agent=42,queue=sales",
        }
    )
    for i, off in enumerate(range(0, len(payload), frame)):
        yield json.dumps(
            {
                "sequenceNumber": i + 1,
                "streamId": "s-1",
                "event": "media",
                "media": {
                    "track": "inbound",
                    "timestamp": str(i * 20),
                    "chunk": i + 1,
                    "payload": b64(payload[off : off + frame]),
                },
            }
        )


def exotel_call(payload: bytes, frame: int = 1600) -> Iterator[str]:
    yield json.dumps({"event": "connected"})
    yield json.dumps(
        {
            "event": "start",
            "sequence_number": "1",
            "stream_sid": "MZex01",
            "start": {
                "stream_sid": "MZex01",
                "call_sid": "CAex01",
                "account_sid": "ACex01",
                "from": "+911234",
                "to": "+915678",
                "custom_parameters": {"key1": "value1"},
                "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"},
            },
        }
    )
    seq = 2
    for i, off in enumerate(range(0, len(payload), frame)):
        yield json.dumps(
            {
                "event": "media",
                "sequence_number": str(seq),
                "stream_sid": "MZex01",
                "media": {
                    "chunk": str(i + 1),
                    "timestamp": str(i * 100),
                    "payload": b64(payload[off : off + frame]),
                },
            }
        )
        seq += 1
    yield json.dumps({"event": "stop", "sequence_number": str(seq), "stream_sid": "MZex01", "stop": {}})


def vonage_hello(rate: int = 16000) -> str:
    return json.dumps({"app": "demo", "uuid": "vg-call-1", "content-type": f"audio/l16;rate={rate}"})


class AudioHookClient:
    """Builds AudioHook v2 client messages with correct seq/serverseq/position bookkeeping."""

    def __init__(self, session: str = "e160e428-53e2-487c-977d-96989bf5c99d", fmt: str = "PCMU") -> None:
        self.session = session
        self.fmt = fmt
        self.seq = 0
        self.serverseq = 0
        self.position = 0.0

    def msg(self, kind: str, **parameters: object) -> str:
        self.seq += 1
        return json.dumps(
            {
                "version": "2",
                "type": kind,
                "seq": self.seq,
                "serverseq": self.serverseq,
                "id": self.session,
                "position": f"PT{self.position:.3f}S",
                "parameters": parameters,
            }
        )

    def open(self, conversation: str = "090eaa2f-72fa-480a-83e0-8667ff89c0ec") -> str:
        return self.msg(
            "open",
            organizationId="d7934305-0972-4844-938e-9060eef73d05",
            conversationId=conversation,
            participant={
                "id": "883efee8",
                "ani": "+13175551111",
                "aniName": "John Doe",
                "dnis": "+13175552222",
            },
            media=[
                {"type": "audio", "format": self.fmt, "channels": ["external", "internal"], "rate": 8000},
                {"type": "audio", "format": self.fmt, "channels": ["external"], "rate": 8000},
            ],
            language="en-US",
            customConfig={},
        )

    def saw(self, reply: str) -> dict:
        data = json.loads(reply)
        self.serverseq = data["seq"]
        return data
