"""The one interface every ingest protocol implements, and the actions it produces.

A parser is a sans-I/O state machine in the manner of python-websockets' ``protocol.py`` and pipecat's frame
serializers: the server hands it each decoded websocket message (``receive_text`` / ``receive_binary``) and
gets back a list of *actions* to carry out: open a stream, feed audio to a stream, stop a stream, send a
reply, or end the connection with a protocol error. Parsers never touch sockets, clocks or the engine, so
each platform's message shapes are tested by feeding dictionaries and bytes, and fuzzed without a network.

Every parser emits *mono* streams: where a platform multiplexes several speakers (Twilio ``both_tracks``,
AudioHook stereo external/internal), the parser splits them into one stream per speaker so that each is
scored separately. Audio payloads are passed on in their wire encoding (mu-law, A-law, little-endian 16-bit
PCM, float32); decoding is the core's job (``stream_guard.core.formats``).

Errors: anything a remote peer can send is handled. Malformed input produces a :class:`ProtocolError` action
(never an exception), which the adapter turns into a websocket close with the given code and reason. Close
codes follow RFC 6455: 1003 unsupported data (binary where text is expected), 1007 invalid payload (bad
JSON, bad base64, inconsistent frames), 1008 policy violation, 1009 message too big; 4xxx are stream-guard
specific and documented in ``docs/serve.md``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from stream_guard.events import SummaryEvent

# RFC 6455 close codes used by the parsers.
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
# Application codes (4000-4999 are free for applications).
CLOSE_UNSUPPORTED_MEDIA = 4415
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_TOO_MANY_STREAMS = 4429
CLOSE_IDLE = 4408
CLOSE_MAX_DURATION = 4410

ENCODINGS = ("pcm16", "float32", "mulaw", "alaw")
_SAMPLE_BYTES = {"pcm16": 2, "float32": 4, "mulaw": 1, "alaw": 1}


@dataclass(frozen=True)
class WireFormat:
    """Audio as a platform puts it on the wire: ``pcm16`` is little-endian signed 16-bit, ``float32``
    little-endian.

    Converted one-to-one into the core's ``AudioFormat`` by the server; kept here so that parsers depend on
    nothing but the standard library and can describe what they receive before any decoding happens.
    """

    sample_rate: int
    encoding: str
    channels: int = 1

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {self.encoding!r} (expected one of {', '.join(ENCODINGS)})")
        if not 1000 <= self.sample_rate <= 192000:
            raise ValueError(f"sample rate {self.sample_rate} Hz is outside 1000..192000")
        if not 1 <= self.channels <= 8:
            raise ValueError(f"channel count {self.channels} is outside 1..8")

    @property
    def frame_bytes(self) -> int:
        """Bytes per sample frame (all channels): audio payloads must be a whole number of these."""
        return _SAMPLE_BYTES[self.encoding] * self.channels


@dataclass(frozen=True)
class StartStream:
    """Open a stream to score. ``labels`` carry platform identifiers (call id, track, role) into events."""

    stream_id: str
    fmt: WireFormat
    labels: dict[str, str] = field(default_factory=dict)
    emit_map: bool = False


@dataclass(frozen=True)
class Audio:
    """Audio for an open stream, in the stream's wire format, a whole number of frames."""

    stream_id: str
    data: bytes


@dataclass(frozen=True)
class StopStream:
    """The stream ended normally: finish its last window and emit its summary."""

    stream_id: str
    reason: str = "stop"


@dataclass(frozen=True)
class Reply:
    """A message to send back on the same socket: ``str`` goes out as a text frame, ``bytes`` as binary."""

    message: str | bytes


@dataclass(frozen=True)
class EndSession:
    """The peer asked to end the session and expects an answer once all its streams are summarised.

    The adapter stops every open stream of the connection, waits for their summaries and then calls
    :meth:`ProtocolParser.session_ended` with them, which returns the closing replies (AudioHook's
    ``closed`` with the verdict in its output variables). ``close`` says whether the server closes the
    socket afterwards.
    """

    reason: str = "end"
    close: bool = True


@dataclass(frozen=True)
class ProtocolError:
    """The connection must be closed: ``code`` is the websocket close code, ``reason`` a short readable
    text."""

    code: int
    reason: str

    def __post_init__(self) -> None:
        # A websocket close reason must fit in 123 bytes of UTF-8.
        if len(self.reason.encode()) > 123:
            object.__setattr__(self, "reason", self.reason.encode()[:120].decode(errors="ignore") + "...")


@dataclass(frozen=True)
class Notice:
    """Something worth counting but not fatal (sequence gap, duplicate frame, ignored event)."""

    kind: str
    detail: str = ""


Action = StartStream | Audio | StopStream | Reply | EndSession | ProtocolError | Notice


class ProtocolParser(ABC):
    """Base class of every ingest protocol: feed it messages, carry out the actions it returns.

    After a :class:`ProtocolError` the parser is *failed* and ignores further input (returns ``[]``),
    because the adapter is closing the connection. Subclasses implement :meth:`_text` and optionally
    :meth:`_binary`; they raise :class:`Reject` for bad input, which this class turns into a ProtocolError
    action, so no code path can leak an exception to the adapter. Any other exception is a bug and is
    reported as ``1011 internal error`` rather than crashing the connection handler.
    """

    name: ClassVar[str] = "base"

    def __init__(self) -> None:
        self.failed = False
        self.streams: dict[str, WireFormat] = {}
        self.messages = 0

    # -- public API --
    def receive_text(self, text: str) -> list[Action]:
        """Handle one text frame."""
        if self.failed:
            return []
        self.messages += 1
        try:
            msg = parse_json(text)
            return self._check(self._text(msg))
        except Reject as exc:
            return self._fail(exc.code, exc.reason)
        except Exception as exc:  # noqa: BLE001 - a parser bug must not crash the server; report it as such
            return self._fail(CLOSE_INTERNAL, f"internal error in {self.name} parser: {type(exc).__name__}")

    def receive_binary(self, data: bytes) -> list[Action]:
        """Handle one binary frame."""
        if self.failed:
            return []
        self.messages += 1
        try:
            return self._check(self._binary(bytes(data)))
        except Reject as exc:
            return self._fail(exc.code, exc.reason)
        except Exception as exc:  # noqa: BLE001
            return self._fail(CLOSE_INTERNAL, f"internal error in {self.name} parser: {type(exc).__name__}")

    def receive_eof(self) -> list[Action]:
        """The connection ended without a stop message: stop every open stream (its audio is still scored)."""
        actions: list[Action] = [StopStream(sid, "disconnect") for sid in list(self.streams)]
        self.streams.clear()
        return actions

    def end_streams(self, reason: str = "end") -> list[Action]:
        """Stop actions for every open stream; the adapter uses them to carry out an :class:`EndSession`."""
        actions: list[Action] = [StopStream(sid, reason) for sid in list(self.streams)]
        self.streams.clear()
        return actions

    def session_ended(self, summaries: Mapping[str, SummaryEvent]) -> list[Action]:
        """Replies owed once an :class:`EndSession` was carried out (default: none)."""
        return []

    def goodbye(self, summaries: Mapping[str, SummaryEvent]) -> list[Action]:
        """Messages to send when the *server* ends the session (shutdown), after its streams were
        summarised."""
        return []

    # -- for subclasses --
    @abstractmethod
    def _text(self, msg: dict[str, Any]) -> list[Action]: ...

    def _binary(self, data: bytes) -> list[Action]:
        raise Reject(CLOSE_UNSUPPORTED_DATA, f"{self.name}: binary frames are not part of this protocol")

    def _open(
        self, stream_id: str, fmt: WireFormat, labels: dict[str, str], emit_map: bool = False
    ) -> StartStream:
        if stream_id in self.streams:
            raise Reject(CLOSE_PROTOCOL_ERROR, f"{self.name}: stream {stream_id!r} started twice")
        self.streams[stream_id] = fmt
        return StartStream(stream_id, fmt, {"protocol": self.name, **labels}, emit_map)

    def _stop(self, stream_id: str, reason: str = "stop") -> StopStream:
        self.streams.pop(stream_id, None)
        return StopStream(stream_id, reason)

    def _audio(self, stream_id: str, data: bytes) -> Audio:
        fmt = self.streams.get(stream_id)
        if fmt is None:
            raise Reject(
                CLOSE_PROTOCOL_ERROR, f"{self.name}: audio for stream {stream_id!r} before it started"
            )
        if len(data) % fmt.frame_bytes:
            raise Reject(
                CLOSE_INVALID_PAYLOAD,
                f"{self.name}: audio payload of {len(data)} bytes is not a whole number of "
                f"{fmt.frame_bytes}-byte {fmt.encoding} frames",
            )
        return Audio(stream_id, data)

    def _fail(self, code: int, reason: str) -> list[Action]:
        self.failed = True
        return [ProtocolError(code, reason)]

    def _check(self, actions: list[Action]) -> list[Action]:
        if any(isinstance(a, ProtocolError) for a in actions):
            self.failed = True
        return actions


class Reject(Exception):
    """Raised inside parsers for bad input; converted into a :class:`ProtocolError` action by the base
    class."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# -- helpers shared by the parsers --
def parse_json(text: str) -> dict[str, Any]:
    """A text frame as a JSON object, or Reject(1007) saying why not."""
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        raise Reject(CLOSE_INVALID_PAYLOAD, "text frame is not valid JSON") from None
    if not isinstance(msg, dict):
        raise Reject(CLOSE_INVALID_PAYLOAD, f"expected a JSON object, got {type(msg).__name__}")
    return msg


def b64(value: Any, what: str) -> bytes:
    """Strict base64 decoding of a payload field (whitespace or stray characters are errors, not silently
    skipped)."""
    if not isinstance(value, str):
        raise Reject(CLOSE_INVALID_PAYLOAD, f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Reject(CLOSE_INVALID_PAYLOAD, f"{what} is not valid base64") from None


def obj(msg: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    """A required JSON object member."""
    value = msg.get(key)
    if not isinstance(value, dict):
        raise Reject(CLOSE_INVALID_PAYLOAD, f"{where}: '{key}' must be a JSON object")
    return value


def text_field(msg: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    """A required (or defaulted) short string member; numbers are accepted and stringified (platforms mix
    both)."""
    value = msg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Reject(CLOSE_INVALID_PAYLOAD, f"{where}: '{key}' must be a string")
    value = str(value)
    if not value or len(value) > 256:
        raise Reject(CLOSE_INVALID_PAYLOAD, f"{where}: '{key}' must be 1 to 256 characters")
    return value


def int_field(msg: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    """An integer member that platforms send either as a number or as a decimal string ("sequenceNumber":
    "3")."""
    value = msg.get(key, default)
    if isinstance(value, bool):
        value = None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 19:
        value = int(value)
    if not isinstance(value, int):
        raise Reject(CLOSE_INVALID_PAYLOAD, f"{where}: '{key}' must be an integer")
    return value


def labels_from(value: Any, prefix: str = "") -> dict[str, str]:
    """Platform custom parameters as string labels (at most 32, short keys and values; others dropped)."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, str] = {}
    for k, v in list(value.items())[:32]:
        if isinstance(v, (str, int, float)) and not isinstance(v, bool) and len(str(k)) <= 64:
            out[f"{prefix}{k}"] = str(v)[:256]
    return out


def wire_format(sample_rate: int, encoding: str, channels: int, where: str) -> WireFormat:
    try:
        return WireFormat(sample_rate, encoding, channels)
    except ValueError as exc:
        raise Reject(CLOSE_UNSUPPORTED_MEDIA, f"{where}: {exc}") from None
