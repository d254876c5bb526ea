"""The family of JSON "media stream" protocols: Twilio, Telnyx, Plivo and Exotel.

All four send ``{"event": ...}`` JSON text frames: an optional ``connected``, a ``start`` describing the
call and the audio format, ``media`` messages with base64 audio and a ``track``, a few control events, and
``stop``. They differ in key spelling (``streamSid`` / ``stream_id`` / ``streamId`` / ``stream_sid``), in
where the format is described, and in delivery order. :class:`MediaStreamParser` implements the shared state
machine; each platform module supplies its spelling and its ``start`` parsing.

A call with both tracks becomes two streams, ``<stream>/inbound`` (role ``caller``: what the far end says) and
``<stream>/outbound`` (role ``agent``: what is played or said to them), scored separately. Streams open at
``start`` when the platform lists its tracks there, otherwise on the first media message of each track.
"""

from __future__ import annotations

from typing import Any, ClassVar

from stream_guard.protocols.base import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_MEDIA,
    Action,
    Notice,
    ProtocolError,
    ProtocolParser,
    Reject,
    WireFormat,
    b64,
    int_field,
    obj,
    text_field,
)
from stream_guard.protocols.sequencing import Reorderer, SequenceChecker

TRACK_ALIASES = {
    "inbound": "inbound",
    "inbound_track": "inbound",
    "outbound": "outbound",
    "outbound_track": "outbound",
}
ROLES = {"inbound": "caller", "outbound": "agent"}

# Content types seen on these platforms -> (encoding, default sample rate).
CONTENT_TYPES = {
    "audio/x-mulaw": ("mulaw", 8000),
    "audio/mulaw": ("mulaw", 8000),
    "audio/pcmu": ("mulaw", 8000),
    "pcmu": ("mulaw", 8000),
    "audio/x-alaw": ("alaw", 8000),
    "audio/pcma": ("alaw", 8000),
    "pcma": ("alaw", 8000),
    "audio/x-l16": ("pcm16", 8000),
    "audio/l16": ("pcm16", 8000),
    "l16": ("pcm16", 16000),
    "audio/x-raw": ("pcm16", 8000),
}


def parse_content_type(value: str, where: str) -> tuple[str, int]:
    """``audio/x-l16;rate=16000`` -> ("pcm16", 16000); unknown types are a clear 4415 reject."""
    parts = [p.strip() for p in value.split(";")]
    base = parts[0].lower()
    if base not in CONTENT_TYPES:
        raise Reject(CLOSE_UNSUPPORTED_MEDIA, f"{where}: unsupported audio type {parts[0]!r}")
    encoding, rate = CONTENT_TYPES[base]
    for p in parts[1:]:
        key, _, val = p.partition("=")
        if key.strip().lower() == "rate":
            if not val.strip().isdigit():
                raise Reject(CLOSE_UNSUPPORTED_MEDIA, f"{where}: bad rate in {value!r}")
            rate = int(val.strip())
    return encoding, rate


class MediaStreamParser(ProtocolParser):
    """Shared state machine of the JSON media-stream protocols (see the module docstring)."""

    sequence_key: ClassVar[str] = "sequenceNumber"
    stream_key: ClassVar[str] = "streamSid"
    known_events: ClassVar[frozenset[str]] = frozenset(
        {"connected", "start", "media", "dtmf", "mark", "stop"}
    )
    reorder: ClassVar[bool] = False

    def __init__(self, connection_id: str = "conn", reorder_depth: int = 10) -> None:
        super().__init__()
        self.connection_id = connection_id
        self.base_id: str | None = None
        self.wire_stream: str | None = None
        self.fmt: WireFormat | None = None
        self.labels: dict[str, str] = {}
        self.tracks: tuple[str, ...] | None = None
        self.opened: set[str] = set()
        self.stopped = False
        self.checker = SequenceChecker()
        self.reorderer = Reorderer(depth=reorder_depth)

    # -- platform hooks --
    def parse_start(
        self, msg: dict[str, Any]
    ) -> tuple[str, WireFormat, dict[str, str], tuple[str, ...] | None]:
        """(stream id, wire format, labels, declared tracks or None) from a ``start`` message."""
        raise NotImplementedError

    def transform_payload(self, data: bytes) -> bytes:
        """Turn a wire payload into the declared WireFormat (e.g. byte-swap big-endian L16)."""
        return data

    # -- state machine --
    def _text(self, msg: dict[str, Any]) -> list[Action]:
        event = text_field(msg, "event", self.name)
        if event not in self.known_events:
            raise Reject(CLOSE_PROTOCOL_ERROR, f"{self.name}: unknown event {event[:40]!r}")
        if event == "connected":
            return []
        if self.sequence_key not in msg:
            return self._handle(msg, event)
        seq = int_field(msg, self.sequence_key, f"{self.name} {event}")
        if self.reorder:
            released, notices = self.reorderer.push(seq, msg)
            if event == "stop":
                more, more_notices = self.reorderer.flush()
                released += more
                notices += more_notices
            actions: list[Action] = list(notices)
            for m in released:
                actions += self._handle(m, str(m["event"]))
            return actions
        fresh, notices = self.checker.check(seq)
        if not fresh:
            return list(notices)
        return [*notices, *self._handle(msg, event)]

    def _handle(self, msg: dict[str, Any], event: str) -> list[Action]:
        if self.stopped:
            return [Notice("after_stop", f"{event} after stop ignored")]
        if event == "start":
            return self._on_start(msg)
        if event == "media":
            return self._on_media(msg)
        if event == "stop":
            self.stopped = True
            return [self._stop(sid, "stop") for sid in list(self.streams)]
        return [Notice(event, "")]

    def _on_start(self, msg: dict[str, Any]) -> list[Action]:
        if self.base_id is not None:
            raise Reject(CLOSE_PROTOCOL_ERROR, f"{self.name}: a second 'start' on one connection")
        start = obj(msg, "start", f"{self.name} start")
        base_id, fmt, labels, tracks = self.parse_start(msg)
        self.wire_stream = str(msg.get(self.stream_key) or start.get(self.stream_key) or base_id)
        self.base_id, self.fmt, self.labels, self.tracks = base_id, fmt, labels, tracks
        return [self._open_track(t) for t in tracks or ()]

    def _open_track(self, track: str) -> Action:
        assert self.base_id is not None and self.fmt is not None
        self.opened.add(track)
        labels = {**self.labels, "track": track, "role": ROLES[track]}
        return self._open(f"{self.base_id}/{track}", self.fmt, labels)

    def _on_media(self, msg: dict[str, Any]) -> list[Action]:
        if self.base_id is None:
            raise Reject(CLOSE_PROTOCOL_ERROR, f"{self.name}: media before start")
        sid = msg.get(self.stream_key)
        if sid is not None and str(sid) != self.wire_stream:
            raise Reject(CLOSE_PROTOCOL_ERROR, f"{self.name}: media for unknown stream {str(sid)[:40]!r}")
        media = obj(msg, "media", f"{self.name} media")
        raw_track = text_field(media, "track", f"{self.name} media", default="inbound")
        track = TRACK_ALIASES.get(raw_track.lower())
        if track is None:
            raise Reject(CLOSE_INVALID_PAYLOAD, f"{self.name}: unknown track {raw_track[:40]!r}")
        actions: list[Action] = []
        if track not in self.opened:
            if self.tracks is not None and track not in self.tracks:
                raise Reject(
                    CLOSE_PROTOCOL_ERROR, f"{self.name}: media on track {track!r} not announced in start"
                )
            actions.append(self._open_track(track))
        data = self.transform_payload(b64(media.get("payload"), f"{self.name} media.payload"))
        actions.append(self._audio(f"{self.base_id}/{track}", data))
        return actions

    def receive_eof(self) -> list[Action]:
        """Connection gone: release frames still held for reordering, then stop every stream."""
        actions: list[Action] = []
        if self.reorder and not self.failed and not self.stopped:
            try:
                released, notices = self.reorderer.flush()
                actions += notices
                for m in released:
                    actions += self._handle(m, str(m["event"]))
            except Reject:
                pass  # the connection is gone; what was valid has already been delivered
            actions = [a for a in actions if not isinstance(a, ProtocolError)]
        return actions + super().receive_eof()

    @property
    def stats(self) -> dict[str, int]:
        """Counters for metrics and summaries: lost, repeated and reordered messages."""
        return {
            "gaps": self.checker.gaps + self.reorderer.lost,
            "repeats": self.checker.repeats + self.reorderer.late,
            "reordered": self.reorderer.reordered,
        }
