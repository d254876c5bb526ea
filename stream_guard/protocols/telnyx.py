"""Telnyx Media Streaming (telephony.md section 2.3).

Same shape as Twilio with snake_case keys (``stream_id``, ``sequence_number``, ``start.media_format``), but
"media frame order is not guaranteed": messages pass through a
:class:`~stream_guard.protocols.sequencing.Reorderer` keyed by ``sequence_number`` and are handled in order.
Payloads are RTP payloads without headers: PCMU, PCMA or L16. RTP carries L16 in network byte order (RFC
3551, section 4.5.11), so L16 is byte-swapped to little-endian here. G722, OPUS and AMR-WB are refused with
a clear 4415 close (configure ``stream_codec`` to PCMU, PCMA or L16).
"""

from __future__ import annotations

import sys
from array import array
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
from stream_guard.protocols.mediastreams import MediaStreamParser
from stream_guard.protocols.twilio import declared_tracks

CODECS = {"PCMU": ("mulaw", 8000), "PCMA": ("alaw", 8000), "L16": ("pcm16", 16000)}


class TelnyxParser(MediaStreamParser):
    """Telnyx media streaming with reordering; see the module docstring."""

    name = "telnyx"
    sequence_key = "sequence_number"
    stream_key = "stream_id"
    reorder = True
    known_events = frozenset({"connected", "start", "media", "dtmf", "mark", "error", "stop"})

    def parse_start(
        self, msg: dict[str, Any]
    ) -> tuple[str, WireFormat, dict[str, str], tuple[str, ...] | None]:
        start = obj(msg, "start", "telnyx start")
        sid = text_field(msg, "stream_id", "telnyx start")
        mf = start.get("media_format") or {}
        if not isinstance(mf, dict):
            raise Reject(1007, "telnyx start: 'media_format' must be a JSON object")
        codec = text_field(mf, "encoding", "telnyx media_format", default="PCMU").upper()
        if codec not in CODECS:
            raise Reject(
                CLOSE_UNSUPPORTED_MEDIA,
                f"telnyx: codec {codec[:20]!r} is not supported (use stream_codec PCMU, PCMA or L16)",
            )
        encoding, default_rate = CODECS[codec]
        rate = int_field(mf, "sample_rate", "telnyx media_format", default=default_rate)
        channels = int_field(mf, "channels", "telnyx media_format", default=1)
        if channels != 1:
            raise Reject(CLOSE_UNSUPPORTED_MEDIA, f"telnyx: expected mono media, got {channels} channels")
        self._swap = encoding == "pcm16"
        labels = {"stream_id": sid}
        for key in ("call_control_id", "from", "to"):
            if isinstance(start.get(key), str):
                labels[key] = start[key][:128]
        labels.update(labels_from(start.get("custom_parameters"), "param."))
        return (
            sid,
            wire_format(rate, encoding, 1, "telnyx media_format"),
            labels,
            declared_tracks(start.get("tracks"), "telnyx start"),
        )

    def transform_payload(self, data: bytes) -> bytes:
        if not getattr(self, "_swap", False) or len(data) % 2:
            return data  # an odd L16 payload is rejected by the frame-size check
        samples = array("h")
        samples.frombytes(data)
        if sys.byteorder == "little":
            samples.byteswap()
        return samples.tobytes()
