"""Exotel AgentStream / Voicebot streams (telephony.md section 2.5).

``connected`` -> ``start`` (``stream_sid``, ``start.call_sid``, ``start.media_format`` =
``{"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}``, ``custom_parameters``) -> ``media``
(base64 little-endian 16-bit PCM, about every 100 ms) -> ``stop``. Exotel has no track separation: one stream.
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


class ExotelParser(MediaStreamParser):
    """Exotel streams; see the module docstring."""

    name = "exotel"
    sequence_key = "sequence_number"
    stream_key = "stream_sid"
    known_events = frozenset({"connected", "start", "media", "dtmf", "mark", "clear", "stop"})

    def parse_start(
        self, msg: dict[str, Any]
    ) -> tuple[str, WireFormat, dict[str, str], tuple[str, ...] | None]:
        start = obj(msg, "start", "exotel start")
        sid = text_field(start, "stream_sid", "exotel start", default=msg.get("stream_sid"))
        mf = obj(start, "media_format", "exotel start")
        encoding, rate = parse_content_type(
            text_field(mf, "encoding", "exotel media_format", default="audio/x-raw"), "exotel"
        )
        rate = int_field(mf, "sample_rate", "exotel media_format", default=rate)
        bits = int_field(mf, "bit_rate", "exotel media_format", default=16)
        if encoding == "pcm16" and bits != 16:
            raise Reject(CLOSE_UNSUPPORTED_MEDIA, f"exotel: {bits}-bit PCM is not supported (expected 16)")
        labels = {"stream_sid": sid}
        for key in ("call_sid", "account_sid", "from", "to"):
            if isinstance(start.get(key), str):
                labels[key] = start[key][:64]
        labels.update(labels_from(start.get("custom_parameters"), "param."))
        return sid, wire_format(rate, encoding, 1, "exotel media_format"), labels, ("inbound",)
