"""stream-guard's own protocol (``/v1/stream``), for integrators who control the client.

Client -> server::

    {"type": "start", "stream": "call-1", "sample_rate": 16000, "encoding": "pcm16", "channels": 1,
     "labels": {"site": "lab"}, "emit_map": false}
    <binary frames: audio in that format, any size that is a whole number of sample frames>
    {"type": "stop"}

Server -> client: ``{"type": "started", "stream": ...}``, then the stream's events as JSON text frames
(``score``, ``map`` when ``emit_map`` is true, ``alert``, ``error``, and ``summary`` last; see
``stream_guard.events``). After the summary the client may start another stream on the same connection or
close it. One stream is active at a time; ``encoding`` is ``pcm16`` (little-endian), ``float32``
(little-endian), ``mulaw`` or ``alaw``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from stream_guard.protocols.base import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_PROTOCOL_ERROR,
    ENCODINGS,
    Action,
    ProtocolParser,
    Reject,
    Reply,
    int_field,
    labels_from,
    text_field,
    wire_format,
)

STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")


class NativeParser(ProtocolParser):
    """The native protocol; see the module docstring."""

    name = "native"

    def __init__(self, connection_id: str = "conn") -> None:
        super().__init__()
        self.connection_id = connection_id
        self.active: str | None = None

    def _text(self, msg: dict[str, Any]) -> list[Action]:
        kind = text_field(msg, "type", "native")
        if kind == "start":
            return self._start(msg)
        if kind == "stop":
            if self.active is None:
                raise Reject(CLOSE_PROTOCOL_ERROR, "native: 'stop' without an active stream")
            sid, self.active = self.active, None
            return [self._stop(sid, "stop")]
        raise Reject(
            CLOSE_PROTOCOL_ERROR, f"native: unknown message type {kind[:40]!r} (expected start or stop)"
        )

    def _start(self, msg: dict[str, Any]) -> list[Action]:
        if self.active is not None:
            raise Reject(
                CLOSE_PROTOCOL_ERROR, f"native: stream {self.active!r} is still active; send stop first"
            )
        sid = text_field(msg, "stream", "native start", default=self.connection_id)
        if not STREAM_ID.match(sid):
            raise Reject(CLOSE_INVALID_PAYLOAD, "native start: 'stream' must be 1-128 of [A-Za-z0-9._:/@+-]")
        encoding = text_field(msg, "encoding", "native start", default="pcm16")
        if encoding not in ENCODINGS:
            raise Reject(
                CLOSE_INVALID_PAYLOAD, f"native start: 'encoding' must be one of {', '.join(ENCODINGS)}"
            )
        rate = int_field(msg, "sample_rate", "native start")
        channels = int_field(msg, "channels", "native start", default=1)
        fmt = wire_format(rate, encoding, channels, "native start")
        emit_map = msg.get("emit_map", False)
        if not isinstance(emit_map, bool):
            raise Reject(CLOSE_INVALID_PAYLOAD, "native start: 'emit_map' must be true or false")
        start = self._open(sid, fmt, labels_from(msg.get("labels")), emit_map=emit_map)
        self.active = sid
        return [start, Reply(json.dumps({"type": "started", "stream": sid, "v": 1}))]

    def _binary(self, data: bytes) -> list[Action]:
        if self.active is None:
            raise Reject(CLOSE_PROTOCOL_ERROR, "native: audio before 'start'")
        return [self._audio(self.active, data)]
