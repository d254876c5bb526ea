"""Twilio Media Streams (``<Start><Stream>`` / ``<Connect><Stream>``), as documented in telephony.md section
2.2.

``connected`` -> ``start`` (``start.tracks``, ``start.mediaFormat`` = mu-law 8 kHz mono,
``customParameters``) -> ``media`` (``media.track`` inbound/outbound, base64 mu-law, 20 ms each) ->
``stop``. With ``both_tracks`` the caller and the agent arrive interleaved on one socket and become two
streams. Authentication (the ``X-Twilio-Signature`` header) is checked by the server before the upgrade, see
:mod:`stream_guard.server.auth`.
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
from stream_guard.protocols.mediastreams import TRACK_ALIASES, MediaStreamParser, parse_content_type


def declared_tracks(value: Any, where: str) -> tuple[str, ...] | None:
    """``["inbound", "outbound"]`` -> ("inbound", "outbound"); absent -> None (open tracks as media
    arrives)."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > 2:
        raise Reject(1007, f"{where}: 'tracks' must be a list of one or two track names")
    tracks = []
    for t in value:
        name = TRACK_ALIASES.get(str(t).lower()) if isinstance(t, str) else None
        if name is None:
            raise Reject(1007, f"{where}: unknown track {str(t)[:40]!r}")
        if name not in tracks:
            tracks.append(name)
    return tuple(tracks)


class TwilioParser(MediaStreamParser):
    """Twilio Media Streams over one websocket; see the module docstring."""

    name = "twilio"
    sequence_key = "sequenceNumber"
    stream_key = "streamSid"

    def parse_start(
        self, msg: dict[str, Any]
    ) -> tuple[str, WireFormat, dict[str, str], tuple[str, ...] | None]:
        start = obj(msg, "start", "twilio start")
        sid = text_field(start, "streamSid", "twilio start", default=msg.get("streamSid"))
        mf = obj(start, "mediaFormat", "twilio start")
        encoding, default_rate = parse_content_type(
            text_field(mf, "encoding", "twilio mediaFormat"), "twilio"
        )
        rate = int_field(mf, "sampleRate", "twilio mediaFormat", default=default_rate)
        channels = int_field(mf, "channels", "twilio mediaFormat", default=1)
        if channels != 1:
            raise Reject(CLOSE_UNSUPPORTED_MEDIA, f"twilio: expected mono media, got {channels} channels")
        fmt = wire_format(rate, encoding, 1, "twilio mediaFormat")
        labels = {"stream_sid": sid}
        for key, label in (("callSid", "call_sid"), ("accountSid", "account_sid")):
            if isinstance(start.get(key), str):
                labels[label] = start[key][:64]
        labels.update(labels_from(start.get("customParameters"), "param."))
        return sid, fmt, labels, declared_tracks(start.get("tracks"), "twilio start")
