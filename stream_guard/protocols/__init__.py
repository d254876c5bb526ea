"""Ingest protocols: sans-I/O parsers that turn websocket messages into stream actions.

One interface (:class:`~stream_guard.protocols.base.ProtocolParser`) for the native protocol and six telephony
platforms; :func:`make_parser` builds one by name, ``"auto"`` detects the platform from the first messages.
"""

from stream_guard.protocols.base import (
    Action,
    Audio,
    EndSession,
    Notice,
    ProtocolError,
    ProtocolParser,
    Reply,
    StartStream,
    StopStream,
    WireFormat,
)
from stream_guard.protocols.detect import PARSERS, AutoDetectParser, detect, make_parser

__all__ = [
    "PARSERS",
    "Action",
    "Audio",
    "AutoDetectParser",
    "EndSession",
    "Notice",
    "ProtocolError",
    "ProtocolParser",
    "Reply",
    "StartStream",
    "StopStream",
    "WireFormat",
    "detect",
    "make_parser",
]
