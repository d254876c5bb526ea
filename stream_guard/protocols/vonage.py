"""Vonage Voice API websockets (telephony.md section 2.6).

The first frame is text JSON: the NCCO's ``headers`` plus ``content-type`` (``audio/l16;rate=8000`` or
``16000``); every later audio frame is binary little-endian 16-bit PCM (20 ms: 320 bytes at 8 kHz, 640 at 16
kHz). The socket is a call participant and receives the *mix* of the call, so one stream with role ``mix``.
Later text frames (``websocket:dtmf`` and similar notifications) are counted and ignored. The stream id
comes from a ``uuid``, ``call_uuid`` or ``conversation_uuid`` header when the NCCO sets one, else from the
connection.
"""

from __future__ import annotations

from typing import Any

from stream_guard.protocols.base import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_MEDIA,
    Action,
    Notice,
    ProtocolParser,
    Reject,
    labels_from,
    text_field,
    wire_format,
)
from stream_guard.protocols.mediastreams import parse_content_type

ID_HEADERS = ("uuid", "call_uuid", "conversation_uuid")


class VonageParser(ProtocolParser):
    """Vonage binary L16 websocket; see the module docstring."""

    name = "vonage"

    def __init__(self, connection_id: str = "conn") -> None:
        super().__init__()
        self.connection_id = connection_id
        self.stream_id: str | None = None

    def _text(self, msg: dict[str, Any]) -> list[Action]:
        if self.stream_id is not None:
            event = msg.get("event")
            # a fixed kind: notice kinds become metric labels, which must not be chosen by the peer
            return [Notice("text_event", str(event)[:40] if isinstance(event, str) else "")]
        if "content-type" not in msg:
            raise Reject(CLOSE_PROTOCOL_ERROR, "vonage: the first message must carry 'content-type'")
        encoding, rate = parse_content_type(text_field(msg, "content-type", "vonage"), "vonage")
        if encoding != "pcm16":
            raise Reject(CLOSE_UNSUPPORTED_MEDIA, "vonage: only audio/l16 is supported")
        fmt = wire_format(rate, encoding, 1, "vonage content-type")
        headers = {k: v for k, v in msg.items() if k not in ("content-type", "event")}
        sid = next((str(headers[k])[:128] for k in ID_HEADERS if isinstance(headers.get(k), str)), None)
        self.stream_id = sid or self.connection_id
        labels = {"role": "mix", **labels_from(headers, "header.")}
        return [self._open(self.stream_id, fmt, labels)]

    def _binary(self, data: bytes) -> list[Action]:
        if self.stream_id is None:
            raise Reject(CLOSE_PROTOCOL_ERROR, "vonage: audio before the initial content-type message")
        if self.stream_id not in self.streams:
            return [Notice("after_stop", "")]
        return [self._audio(self.stream_id, data)]
