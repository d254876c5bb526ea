"""Plivo ``<Stream>`` (telephony.md section 2.4).

``start`` carries ``start.streamId`` and ``start.callId`` (and, on current Plivo, ``start.mediaFormat`` and
``start.tracks``); ``media`` carries base64 audio in the ``contentType`` chosen in the Plivo XML:
``audio/x-l16;rate=8000`` (the default), ``audio/x-l16;rate=16000`` or ``audio/x-mulaw;rate=8000``. When the
start message does not say, the endpoint's configured content type applies (``/plivo?content_type=...``).
"""

from __future__ import annotations

from typing import Any

from stream_guard.protocols.base import (
    CLOSE_UNSUPPORTED_MEDIA,
    Reject,
    WireFormat,
    int_field,
    labels_from,
    obj,
    text_field,
    wire_format,
)
from stream_guard.protocols.mediastreams import MediaStreamParser, parse_content_type
from stream_guard.protocols.twilio import declared_tracks

DEFAULT_CONTENT_TYPE = "audio/x-l16;rate=8000"


class PlivoParser(MediaStreamParser):
    """Plivo audio streams; see the module docstring."""

    name = "plivo"
    sequence_key = "sequenceNumber"
    stream_key = "streamId"
    known_events = frozenset(
        {"connected", "start", "media", "dtmf", "stop", "playedStream", "clearedAudio", "mark"}
    )

    def __init__(self, connection_id: str = "conn", content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        super().__init__(connection_id)
        self.content_type = content_type

    def parse_start(
        self, msg: dict[str, Any]
    ) -> tuple[str, WireFormat, dict[str, str], tuple[str, ...] | None]:
        start = obj(msg, "start", "plivo start")
        sid = text_field(start, "streamId", "plivo start", default=msg.get("streamId"))
        encoding, rate = parse_content_type(self.content_type, "plivo content type")
        mf = start.get("mediaFormat")
        if isinstance(mf, dict) and "encoding" in mf:
            encoding, rate = parse_content_type(text_field(mf, "encoding", "plivo mediaFormat"), "plivo")
            rate = int_field(mf, "sampleRate", "plivo mediaFormat", default=rate)
            if int_field(mf, "channels", "plivo mediaFormat", default=1) != 1:
                raise Reject(CLOSE_UNSUPPORTED_MEDIA, "plivo: expected mono media")
        labels = {"stream_id": sid}
        for key, label in (("callId", "call_id"), ("accountId", "account_id")):
            if isinstance(start.get(key), str):
                labels[label] = start[key][:64]
        if isinstance(msg.get("extra_headers"), str):
            pairs = (p.partition("=") for p in msg["extra_headers"][:512].split(","))
            labels.update(labels_from({k: v for k, _, v in pairs if k}, "header."))
        tracks = start.get("tracks")
        if tracks == ["both"]:
            tracks = ["inbound", "outbound"]
        return (
            sid,
            wire_format(rate, encoding, 1, "plivo media format"),
            labels,
            declared_tracks(tracks, "plivo start"),
        )
