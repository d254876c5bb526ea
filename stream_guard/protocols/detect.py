"""Protocol auto-detection for the shared ingest endpoint (``/v1/ingest``).

A convenience for integrators who point every platform at one URL: the first text message(s) tell the
platforms apart (telephony.md, section 2). Twilio's ``connected`` names ``"protocol": "Call"``; Telnyx's and
Exotel's ``connected`` look alike, so detection waits for ``start`` (``stream_id`` vs ``stream_sid``);
Plivo's ``start`` has ``start.streamId``; AudioHook is ``{"version": "2", "type": "open"}``; Vonage opens
with a ``content-type``; the native protocol with ``{"type": "start"}``. Until a decision, at most
:data:`MAX_PENDING` messages are held; they are then replayed into the chosen parser, so nothing is lost.
The dedicated endpoints remain the robust choice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from stream_guard.events import SummaryEvent
from stream_guard.protocols.audiohook import AudioHookParser
from stream_guard.protocols.base import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_DATA,
    Action,
    ProtocolParser,
    Reject,
)
from stream_guard.protocols.exotel import ExotelParser
from stream_guard.protocols.native import NativeParser
from stream_guard.protocols.plivo import PlivoParser
from stream_guard.protocols.telnyx import TelnyxParser
from stream_guard.protocols.twilio import TwilioParser
from stream_guard.protocols.vonage import VonageParser

PARSERS: dict[str, type[ProtocolParser]] = {
    "native": NativeParser,
    "twilio": TwilioParser,
    "telnyx": TelnyxParser,
    "plivo": PlivoParser,
    "exotel": ExotelParser,
    "vonage": VonageParser,
    "audiohook": AudioHookParser,
}
MAX_PENDING = 3


def make_parser(protocol: str, connection_id: str, **options: Any) -> ProtocolParser:
    """A fresh parser for ``protocol`` (a key of :data:`PARSERS` or ``"auto"``)."""
    if protocol == "auto":
        return AutoDetectParser(connection_id, **options)
    try:
        cls = PARSERS[protocol]
    except KeyError:
        raise ValueError(f"unknown protocol {protocol!r} (expected auto or {', '.join(PARSERS)})") from None
    return cls(connection_id, **options)  # type: ignore[call-arg]


def detect(msg: Mapping[str, Any]) -> str | None:
    """The protocol a first message belongs to; None if it could still be several (wait for the next one)."""
    if msg.get("version") == "2" and msg.get("type") == "open":
        return "audiohook"
    if "content-type" in msg:
        return "vonage"
    if msg.get("type") == "start" and "event" not in msg:
        return "native"
    event = msg.get("event")
    if event == "connected":
        return "twilio" if msg.get("protocol") == "Call" else None
    start = msg.get("start") if isinstance(msg.get("start"), dict) else {}
    if "streamSid" in msg or "streamSid" in start:
        return "twilio"
    if "stream_id" in msg or "call_control_id" in start:
        return "telnyx"
    if "stream_sid" in msg or "stream_sid" in start:
        return "exotel"
    if "streamId" in msg or "streamId" in start:
        return "plivo"
    raise Reject(CLOSE_PROTOCOL_ERROR, "auto-detect: the message matches no supported protocol")


class AutoDetectParser(ProtocolParser):
    """Holds the first messages until the protocol is known, then delegates everything to that parser."""

    name = "auto"

    def __init__(self, connection_id: str = "conn", **options: Any) -> None:
        super().__init__()
        self.connection_id = connection_id
        self.options = options
        self.inner: ProtocolParser | None = None
        self.pending: list[dict[str, Any]] = []

    @property
    def protocol(self) -> str:
        """The detected protocol's name, or ``auto`` before detection."""
        return self.inner.name if self.inner else "auto"

    def receive_text(self, text: str) -> list[Action]:
        if self.inner is not None:
            return self.inner.receive_text(text)
        return super().receive_text(text)

    def receive_binary(self, data: bytes) -> list[Action]:
        if self.inner is not None:
            return self.inner.receive_binary(data)
        return super().receive_binary(data)

    def receive_eof(self) -> list[Action]:
        return self.inner.receive_eof() if self.inner is not None else []

    def end_streams(self, reason: str = "end") -> list[Action]:
        return self.inner.end_streams(reason) if self.inner is not None else []

    def session_ended(self, summaries: Mapping[str, SummaryEvent]) -> list[Action]:
        return self.inner.session_ended(summaries) if self.inner is not None else []

    def goodbye(self, summaries: Mapping[str, SummaryEvent]) -> list[Action]:
        return self.inner.goodbye(summaries) if self.inner is not None else []

    def _text(self, msg: dict[str, Any]) -> list[Action]:
        self.pending.append(msg)
        protocol = detect(msg)
        if protocol is None:
            if len(self.pending) >= MAX_PENDING:
                raise Reject(CLOSE_PROTOCOL_ERROR, "auto-detect: protocol still unknown after 3 messages")
            return []
        options = {k: v for k, v in self.options.items() if k in _OPTIONS.get(protocol, ())}
        self.inner = PARSERS[protocol](self.connection_id, **options)  # type: ignore[call-arg]
        actions: list[Action] = []
        for held in self.pending:
            actions += self.inner.receive_text(json.dumps(held))
        self.pending.clear()
        return actions

    def _binary(self, data: bytes) -> list[Action]:
        raise Reject(CLOSE_UNSUPPORTED_DATA, "auto-detect: the first message must be a JSON text frame")


_OPTIONS = {"plivo": ("content_type",), "telnyx": ("reorder_depth",)}
