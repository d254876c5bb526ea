"""Genesys Cloud AudioHook, protocol version 2 (telephony.md section 2.7), server side.

Genesys is the client. Every text frame is an envelope ``{"version": "2", "type", "seq", "id",
"parameters"}``; client ``seq`` counts up from 1 and each server message carries its own ``seq`` and the
last ``clientseq`` seen.

- ``open`` -> ``opened``: the server picks the first offered media it supports (``PCMU`` or ``L16``, 8 or
  16 kHz, channels ``external`` and/or ``internal``). With both channels, binary frames are stereo
  interleaved (ch 0 = external = customer, ch 1 = internal = agent); each channel becomes its own stream,
  scored separately. A connection probe (all-zero ``conversationId``) is answered but opens no streams.
- ``ping`` -> ``pong``; ``update`` -> ``updated``; ``paused`` / ``resumed`` bracket a time with no audio
  (audio
  that still arrives is dropped and counted); ``discarded`` and ``error`` are counted.
- ``close`` -> every stream is finished and summarised, then ``closed`` carries the verdicts in
  ``outputVariables`` for the Architect flow: ``streamGuardVerdict`` (synthetic if any channel is), and per
  channel ``streamGuard<Channel>Verdict`` / ``...Probability`` / ``...Alerts``, all strings.
- bad input: a ``disconnect`` (reason ``error``, with the reason in ``info``) is sent before the socket
  closes.

The API key header and the HTTP message signature are checked by the server before the upgrade.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Mapping
from typing import Any

from stream_guard.events import SummaryEvent
from stream_guard.protocols.base import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_MEDIA,
    Action,
    Audio,
    EndSession,
    Notice,
    ProtocolError,
    ProtocolParser,
    Reject,
    Reply,
    int_field,
    text_field,
    wire_format,
)

PROBE_CONVERSATION = "00000000-0000-0000-0000-000000000000"
FORMATS = {"PCMU": "mulaw", "L16": "pcm16"}
ROLES = {"external": "customer", "internal": "agent"}
CLIENT_TYPES = frozenset({"open", "close", "discarded", "error", "paused", "ping", "resumed", "update"})


class AudioHookParser(ProtocolParser):
    """AudioHook v2 server-side state machine; see the module docstring."""

    name = "audiohook"

    def __init__(self, connection_id: str = "conn") -> None:
        super().__init__()
        self.connection_id = connection_id
        self.session_id: str | None = None
        self.client_seq = 0
        self.server_seq = 0
        self.channels: tuple[str, ...] = ()
        self.media: dict[str, Any] | None = None
        self.probe = False
        self.paused = False
        self.closing = False
        self.dropped_while_paused = 0

    # -- outgoing --
    def _send(self, kind: str, parameters: dict[str, Any]) -> Reply:
        self.server_seq += 1
        return Reply(
            json.dumps(
                {
                    "version": "2",
                    "type": kind,
                    "seq": self.server_seq,
                    "clientseq": self.client_seq,
                    "id": self.session_id or self.connection_id,
                    "parameters": parameters,
                }
            )
        )

    def _fail(self, code: int, reason: str) -> list[Action]:
        self.failed = True
        actions: list[Action] = []
        if self.session_id is not None:
            actions.append(self._send("disconnect", {"reason": "error", "info": reason}))
        return [*actions, ProtocolError(code, reason)]

    # -- incoming --
    def _text(self, msg: dict[str, Any]) -> list[Action]:
        if msg.get("version") != "2":
            raise Reject(CLOSE_PROTOCOL_ERROR, 'audiohook: only protocol version "2" is supported')
        kind = text_field(msg, "type", "audiohook")
        seq = int_field(msg, "seq", f"audiohook {kind}")
        sid = text_field(msg, "id", f"audiohook {kind}")
        if seq != self.client_seq + 1:
            raise Reject(CLOSE_PROTOCOL_ERROR, f"audiohook: seq {seq} after {self.client_seq}")
        self.client_seq = seq
        if kind not in CLIENT_TYPES:
            raise Reject(CLOSE_PROTOCOL_ERROR, f"audiohook: unknown message type {kind[:40]!r}")
        params = msg.get("parameters", {})
        if not isinstance(params, dict):
            raise Reject(CLOSE_INVALID_PAYLOAD, f"audiohook {kind}: 'parameters' must be a JSON object")
        if kind == "open":
            if self.session_id is not None:
                raise Reject(CLOSE_PROTOCOL_ERROR, "audiohook: a second 'open' on one connection")
            self.session_id = sid
            return self._open_session(params)
        if self.session_id is None:
            raise Reject(CLOSE_PROTOCOL_ERROR, f"audiohook: {kind!r} before 'open'")
        if sid != self.session_id:
            raise Reject(CLOSE_PROTOCOL_ERROR, "audiohook: message for a different session id")
        if self.closing:
            return [Notice("after_close", kind)]
        if kind == "ping":
            return [self._send("pong", {})]
        if kind == "update":
            return [self._send("updated", {})]
        if kind == "paused":
            self.paused = True
            return [Notice("paused", "")]
        if kind == "resumed":
            self.paused = False
            return [Notice("resumed", str(params.get("discarded", ""))[:40])]
        if kind == "close":
            self.closing = True
            reason = params.get("reason", "end")
            return [EndSession(str(reason)[:40] if isinstance(reason, str) else "end", close=True)]
        return [Notice(kind, "")]  # discarded, error

    def _open_session(self, params: dict[str, Any]) -> list[Action]:
        offered = params.get("media")
        if not isinstance(offered, list):
            raise Reject(CLOSE_INVALID_PAYLOAD, "audiohook open: 'media' must be a list")
        chosen = next((m for m in offered[:16] if _acceptable(m)), None)
        if chosen is None:
            raise Reject(
                CLOSE_UNSUPPORTED_MEDIA, "audiohook open: no offered media is PCMU or L16 at 8/16 kHz"
            )
        self.media = {
            "type": "audio",
            "format": chosen["format"],
            "channels": list(chosen["channels"]),
            "rate": int(chosen["rate"]),
        }
        self.channels = tuple(chosen["channels"])
        conversation = params.get("conversationId")
        self.probe = conversation == PROBE_CONVERSATION
        actions: list[Action] = []
        if not self.probe:
            fmt = wire_format(int(chosen["rate"]), FORMATS[chosen["format"]], 1, "audiohook media")
            labels = {"session_id": self.session_id or ""}
            if isinstance(conversation, str):
                labels["conversation_id"] = conversation[:64]
            if isinstance(params.get("organizationId"), str):
                labels["organization_id"] = params["organizationId"][:64]
            participant = params.get("participant")
            if isinstance(participant, dict):
                for key in ("ani", "dnis", "aniName"):
                    if isinstance(participant.get(key), str):
                        labels[f"participant.{key}"] = participant[key][:64]
            for ch in self.channels:
                actions.append(self._open(self._sid(ch), fmt, {**labels, "channel": ch, "role": ROLES[ch]}))
        actions.append(self._send("opened", {"startPaused": False, "media": [self.media]}))
        return actions

    def _sid(self, channel: str) -> str:
        return f"{self.session_id}/{channel}"

    def _binary(self, data: bytes) -> list[Action]:
        if self.media is None:
            raise Reject(CLOSE_PROTOCOL_ERROR, "audiohook: audio before 'open'")
        if self.closing or self.probe:
            return [Notice("audio_ignored", "")]
        if self.paused:
            self.dropped_while_paused += len(data)
            return [Notice("audio_while_paused", "")]
        width = 2 if self.media["format"] == "L16" else 1
        n = len(self.channels)
        if len(data) % (width * n):
            raise Reject(
                CLOSE_INVALID_PAYLOAD,
                f"audiohook: frame of {len(data)} bytes is not a whole number of "
                f"{n}-channel {self.media['format']} samples",
            )
        if n == 1:
            return [self._audio(self._sid(self.channels[0]), data)]
        if width == 1:
            parts = [data[i::n] for i in range(n)]
        else:
            samples = array("h")
            samples.frombytes(data)
            parts = [samples[i::n].tobytes() for i in range(n)]
        return [
            Audio(self._sid(ch), part)
            for ch, part in zip(self.channels, parts, strict=False)
            if self._sid(ch) in self.streams
        ]

    def session_ended(self, summaries: Mapping[str, SummaryEvent]) -> list[Action]:
        return [self._send("closed", {"outputVariables": self._outputs(summaries)})]

    def goodbye(self, summaries: Mapping[str, SummaryEvent]) -> list[Action]:
        """Server shutdown: ``disconnect`` (reason ``completed``) with the verdicts so far in output
        variables."""
        if self.session_id is None or self.closing or self.failed:
            return []
        self.closing = True
        return [
            self._send(
                "disconnect",
                {
                    "reason": "completed",
                    "info": "server shutting down",
                    "outputVariables": self._outputs(summaries),
                },
            )
        ]

    def _outputs(self, summaries: Mapping[str, SummaryEvent]) -> dict[str, str]:
        outputs: dict[str, str] = {}
        verdicts = []
        for ch in self.channels:
            summary = summaries.get(self._sid(ch))
            if summary is None:
                continue
            cap = ch.capitalize()
            verdicts.append(summary.verdict)
            outputs[f"streamGuard{cap}Verdict"] = summary.verdict
            prob = summary.probability
            outputs[f"streamGuard{cap}Probability"] = "" if prob is None else f"{prob:.4f}"
            outputs[f"streamGuard{cap}Alerts"] = str(summary.alerts)
        if "synthetic" in verdicts:
            overall = "synthetic"
        elif "real" in verdicts:
            overall = "real"
        else:
            overall = "uncertain"
        outputs["streamGuardVerdict"] = overall
        return outputs


def _acceptable(media: Any) -> bool:
    if not isinstance(media, dict) or media.get("type") != "audio":
        return False
    channels = media.get("channels")
    rate = media.get("rate")
    return (
        media.get("format") in FORMATS
        and isinstance(rate, int)
        and not isinstance(rate, bool)
        and rate in (8000, 16000)
        and isinstance(channels, list)
        and 1 <= len(channels) <= 2
        and len(set(map(str, channels))) == len(channels)
        and all(c in ROLES for c in channels)
    )
