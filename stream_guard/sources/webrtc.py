"""WebRTC ingest: conferencing clients send one audio track per participant, each track is scored as a stream.

Signalling runs over one websocket per peer (``/v1/webrtc`` in ``stream-guard serve``) as JSON text
messages, so the server needs no second HTTP stack:

client -> server
    ``{"type": "offer", "sdp": "...", "tracks": {"<track id or mid>": {"participant": "alice", "label":
    "Alice"}}}`` (``participant`` / ``label`` at the top level name a single-track peer), then
    optionally ``{"type": "candidate", "candidate": {"candidate": "candidate:...", "sdpMid": "0",
    "sdpMLineIndex": 0}}`` (trickle ICE; ``null`` ends the candidates) and ``{"type": "bye"}``.
server -> client
    ``{"type": "answer", "sdp": "...", "peer": "<id>"}``, one ``{"type": "stream", ...}`` per accepted
    track (its stream id, participant, label and codec), ``{"type": "event", "event": {...}}`` for every
    event of the peer's own streams (the same JSON as ``/v1/events``), ``{"type": "stream_end",
    "stream": ..., "reason": ...}`` and ``{"type": "error", "code": ..., "message": ..., "fatal":
    ...}``.

Why the websocket also carries the events: a conferencing plugin gets its participants' scores on the
connection it already has, without a second subscription; the dashboard still sees every stream on
``/v1/events``.

The peer lives as long as its signalling websocket: a closed websocket (a tab closed, a crashed plugin)
closes the peer connection and ends its streams with a summary. A track that stops delivering audio for
``stall_timeout_s`` ends its stream with reason ``stalled``; when every track of a peer has ended the peer
is closed too.

Audio path per track: aiortc decodes Opus (48 kHz stereo, 20 ms frames) or G.711 (8 kHz mono) -> one
``av.AudioResampler`` per track to 16-bit mono at the engine rate -> a bounded frame backlog ->
``Stream.feed``. aiortc's receive queue is unbounded, so a receiver task always drains it as fast as frames
arrive; if feeding ever falls behind, the oldest frames of the backlog are dropped and counted instead of
letting memory grow.

ICE: STUN/TURN servers come from :class:`WebRTCConfig`. On loopback (tests, a demo on one machine) no server
is needed, but aioice never offers ``127.0.0.1`` as a host candidate; :func:`loopback_candidates` makes it
gather *only* the loopback address for the peers created inside it, so test traffic never leaves the
machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import itertools
import json
import logging
import re
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from stream_guard.events import Event, SummaryEvent

log = logging.getLogger("stream_guard.webrtc")

# RFC 6455 close codes and the application codes shared with the other ingest routes (protocols/base.py).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_IDLE = 4408
CLOSE_UNSUPPORTED_MEDIA = 4415

_ID_RE = re.compile(r"[^A-Za-z0-9._-]+")
CODEC_NAMES = {"opus": "opus", "pcmu": "PCMU", "pcma": "PCMA"}


class WebRTCUnavailable(RuntimeError):
    """aiortc is missing: WebRTC ingest is an optional extra (``pip install 'stream-guard[webrtc]'``)."""


def _require_aiortc() -> Any:
    try:
        import aiortc
    except ImportError:  # pragma: no cover - depends on the installation
        raise WebRTCUnavailable("WebRTC ingest needs aiortc: pip install 'stream-guard[webrtc]'") from None
    return aiortc


# ----------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server handed to every peer connection (``urls`` as in the browser's RTCIceServer)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    @classmethod
    def parse(cls, spec: str) -> IceServer:
        """Read ``stun:HOST[:PORT]`` or ``turn:USER:PASSWORD@HOST[:PORT]`` (the CLI's ``--ice-server``)."""
        spec = spec.strip()
        scheme, sep, rest = spec.partition(":")
        if not sep or scheme not in ("stun", "stuns", "turn", "turns") or not rest:
            raise ValueError(
                f"ICE server {spec!r}: expected stun:HOST[:PORT] or turn:USER:PASSWORD@HOST[:PORT]"
            )
        if "@" in rest:
            creds, _, host = rest.rpartition("@")
            user, _, password = creds.partition(":")
            return cls(urls=(f"{scheme}:{host}",), username=user or None, credential=password or None)
        return cls(urls=(spec,))


@dataclass(frozen=True)
class WebRTCConfig:
    """Limits and network settings of the WebRTC ingest.

    ``loopback`` gathers only ``127.0.0.1`` host candidates (tests and single-machine demos; no STUN needed);
    leave it off in a deployment and list STUN/TURN servers in ``ice_servers`` instead. ``max_peers`` bounds
    the peer connections open at once (each costs sockets, DTLS state and decoder tasks); more are refused
    with close code 1013 so a client retries later. ``stall_timeout_s`` ends a track that delivers no audio
    for that long. ``backlog_frames`` bounds the decoded frames waiting to be fed (drop-oldest beyond it).
    ``codecs`` lists the accepted audio codecs in order of preference; ``opus_max_bitrate`` is the Opus
    bitrate asked of senders (0 leaves it to them).
    """

    ice_servers: tuple[IceServer, ...] = ()
    loopback: bool = False
    max_peers: int = 32
    max_tracks_per_peer: int = 8
    max_message_bytes: int = 128 * 1024
    offer_timeout_s: float = 10.0
    connect_timeout_s: float = 15.0
    stall_timeout_s: float = 5.0
    backlog_frames: int = 100
    sample_rate: int = 16000
    codecs: tuple[str, ...] = ("opus", "PCMU", "PCMA")
    opus_max_bitrate: int = 128_000

    def __post_init__(self) -> None:
        if self.max_peers < 1 or self.max_tracks_per_peer < 1:
            raise ValueError("max_peers and max_tracks_per_peer must be at least 1")
        for name in ("offer_timeout_s", "connect_timeout_s", "stall_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.backlog_frames < 1:
            raise ValueError("backlog_frames must be at least 1")
        unknown = [c for c in self.codecs if c.lower() not in CODEC_NAMES]
        if unknown or not self.codecs:
            raise ValueError(
                f"codecs must be a non-empty subset of opus, PCMU, PCMA (got {list(self.codecs)})"
            )


# ----------------------------------------------------------------------------------------------------
# loopback ICE

_LOOPBACK_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "stream_guard_loopback_ice", default=False
)
_PATCHED = False


def _install_host_address_hook() -> None:
    """Route aioice's host-address lookup through :data:`_LOOPBACK_ONLY` (installed once, process-wide).

    aioice deliberately drops 127.0.0.1 from its host candidates; outside a :func:`loopback_candidates` block
    the original function runs unchanged, inside it the only host candidate is the loopback address.
    """
    global _PATCHED
    if _PATCHED:
        return
    import aioice.ice

    original = aioice.ice.get_host_addresses

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if _LOOPBACK_ONLY.get():
            return ["127.0.0.1"] if use_ipv4 else []
        return original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)

    aioice.ice.get_host_addresses = get_host_addresses
    _PATCHED = True


@contextlib.contextmanager
def loopback_candidates(enabled: bool = True) -> Iterator[None]:
    """Peer connections that gather candidates inside this block offer only 127.0.0.1 (when ``enabled``).

    Gathering happens in ``setLocalDescription``; wrap that call (tasks created inside inherit the setting).
    """
    _install_host_address_hook()
    token = _LOOPBACK_ONLY.set(enabled)
    try:
        yield
    finally:
        _LOOPBACK_ONLY.reset(token)


async def close_peer_connection(pc: Any, settle_s: float = 0.25) -> None:
    """Close an aiortc peer connection and make sure its ICE connections leave no task running.

    aioice starts its consent-freshness task at the end of ``Connection.connect()``. When a peer is closed at
    the moment its ICE checks succeed, ``close()`` runs first and ``connect()`` then starts that task on the
    closed connection, where it loops every 5 s for ever (it has no nominated pair left to fail on). Closing
    a peer right after it connected is ordinary here (a refused track, a client leaving at once), so the task
    is cancelled if it appears within ``settle_s``.
    """
    connections = []
    for transport in _ice_transports(pc):
        conn = getattr(transport, "_connection", None)
        if conn is not None and conn not in connections:
            connections.append(conn)
    with contextlib.suppress(Exception):
        await pc.close()
    deadline = time.monotonic() + settle_s
    while True:
        for conn in connections:
            task = getattr(conn, "_query_consent_task", None)
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(0.02)


def _ice_transports(pc: Any) -> list[Any]:
    found = []
    with contextlib.suppress(Exception):
        for t in pc.getTransceivers():
            dtls = getattr(t.receiver, "transport", None) or getattr(t.sender, "transport", None)
            ice = getattr(dtls, "transport", None)
            if ice is not None:
                found.append(ice)
        sctp = getattr(pc, "sctp", None)
        if sctp is not None and getattr(sctp, "transport", None) is not None:
            found.append(sctp.transport.transport)
    return found


# ----------------------------------------------------------------------------------------------------
# signalling messages (sans-I/O)


class SignallingError(Exception):
    """A client message that cannot be accepted: ``code`` is a stable string, ``close`` a websocket code."""

    def __init__(self, code: str, message: str, close: int = CLOSE_POLICY) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close = close


@dataclass(frozen=True)
class TrackLabel:
    """Who a track belongs to, as the client names it."""

    participant: str
    label: str


@dataclass(frozen=True)
class Offer:
    """A validated ``offer`` message: the SDP plus the participant of each track (by msid track id or mid)."""

    sdp: str
    tracks: dict[str, TrackLabel]
    default: TrackLabel | None
    audio_mids: tuple[str, ...]


def _clean_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SignallingError("bad_message", f"{what} must be a non-empty string")
    cleaned = _ID_RE.sub("-", value.strip())[:64].strip("-")
    if not cleaned:
        raise SignallingError(
            "bad_message", f"{what} {value!r} has no usable characters (letters, digits, . _ -)"
        )
    return cleaned


def _label(raw: Any, what: str) -> TrackLabel:
    if not isinstance(raw, dict):
        raise SignallingError("bad_message", f"{what} must be an object with 'participant' (and 'label')")
    participant = _clean_id(raw.get("participant"), f"{what}.participant")
    label = raw.get("label", participant)
    if not isinstance(label, str):
        raise SignallingError("bad_message", f"{what}.label must be a string")
    return TrackLabel(participant, label.strip()[:120] or participant)


def parse_message(text: str | bytes, max_bytes: int) -> dict[str, Any]:
    """Decode one signalling message: a JSON object with a string ``type``, or a :class:`SignallingError`."""
    if isinstance(text, bytes):
        raise SignallingError(
            "bad_message", "signalling messages are JSON text, not binary", CLOSE_UNSUPPORTED_DATA
        )
    if len(text) > max_bytes:
        raise SignallingError("too_big", f"message of {len(text)} bytes exceeds {max_bytes}", CLOSE_TOO_BIG)
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SignallingError(
            "bad_message", f"not JSON ({exc.msg} at {exc.pos})", CLOSE_INVALID_PAYLOAD
        ) from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise SignallingError(
            "bad_message", "a message must be a JSON object with a string 'type'", CLOSE_INVALID_PAYLOAD
        )
    return msg


def parse_offer(msg: dict[str, Any], config: WebRTCConfig) -> Offer:
    """Validate an offer before aiortc sees it: SDP shape, audio present, no video, track count, labels.

    aiortc accepts video and data channels and would create receivers for them; a monitor only wants audio, so
    a video m-line is refused up front with a clear message rather than silently decoded and discarded.
    """
    from aiortc.sdp import SessionDescription

    sdp = msg.get("sdp")
    if msg.get("sdpType", "offer") != "offer":
        raise SignallingError("bad_sdp", "only an SDP offer is accepted here")
    if not isinstance(sdp, str) or not sdp.strip():
        raise SignallingError("bad_sdp", "the offer has no 'sdp' string")
    if not sdp.lstrip().startswith("v=0"):
        raise SignallingError("bad_sdp", "malformed SDP: it must start with 'v=0'")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises ValueError, IndexError, KeyError... on garbage
        raise SignallingError("bad_sdp", f"malformed SDP ({type(exc).__name__}: {str(exc)[:160]})") from None
    kinds = [m.kind for m in parsed.media]
    if "video" in kinds:
        raise SignallingError(
            "unsupported_media", "video is not accepted: send audio tracks only", CLOSE_UNSUPPORTED_MEDIA
        )
    audio = [m for m in parsed.media if m.kind == "audio" and m.direction in ("sendonly", "sendrecv", None)]
    if not audio:
        raise SignallingError("no_audio", "the offer sends no audio track", CLOSE_UNSUPPORTED_MEDIA)
    if len(audio) > config.max_tracks_per_peer:
        raise SignallingError(
            "too_many_tracks",
            f"{len(audio)} audio tracks exceed the limit of {config.max_tracks_per_peer} per peer",
        )
    for m in audio:
        if not m.ice or not m.ice.usernameFragment or not m.dtls or not m.dtls.fingerprints:
            raise SignallingError(
                "bad_sdp", f"audio m-line {m.rtp.muxId!r} lacks ICE credentials or a DTLS fingerprint"
            )
    wanted = {c.lower() for c in config.codecs}
    for m in audio:
        offered = {c.name.lower() for c in m.rtp.codecs}
        if not offered & wanted:
            raise SignallingError(
                "no_common_codec",
                f"audio m-line {m.rtp.muxId!r} offers {sorted(offered)}; "
                f"this server accepts {list(config.codecs)}",
                CLOSE_UNSUPPORTED_MEDIA,
            )
    raw_tracks = msg.get("tracks", {})
    if not isinstance(raw_tracks, dict):
        raise SignallingError("bad_message", "'tracks' must map a track id or mid to {participant, label}")
    tracks = {str(k): _label(v, f"tracks[{k!r}]") for k, v in raw_tracks.items()}
    default = _label(msg, "offer") if msg.get("participant") is not None else None
    return Offer(sdp=sdp, tracks=tracks, default=default, audio_mids=tuple(str(m.rtp.muxId) for m in audio))


def parse_candidate(msg: dict[str, Any]) -> Any:
    """A trickled remote candidate as an ``RTCIceCandidate`` (``None`` = end of candidates)."""
    from aiortc.sdp import candidate_from_sdp

    raw = msg.get("candidate")
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("candidate"), str):
        raise SignallingError(
            "bad_candidate", "'candidate' must be {candidate, sdpMid, sdpMLineIndex} or null"
        )
    line = raw["candidate"].strip()
    if not line:  # browsers send an empty candidate string to mean end-of-candidates
        return None
    if line.startswith("a="):
        line = line[2:]
    if line.startswith("candidate:"):
        line = line[len("candidate:") :]
    try:
        cand = candidate_from_sdp(line)
    except Exception as exc:
        raise SignallingError("bad_candidate", f"malformed ICE candidate ({str(exc)[:120]})") from None
    cand.sdpMid = raw.get("sdpMid")
    index = raw.get("sdpMLineIndex")
    cand.sdpMLineIndex = index if isinstance(index, int) else None
    if cand.sdpMid is None and cand.sdpMLineIndex is None:
        raise SignallingError("bad_candidate", "a candidate needs sdpMid or sdpMLineIndex")
    return cand


# ----------------------------------------------------------------------------------------------------
# what the ingest needs from the engine and the transport


class EngineStream(Protocol):
    """The part of ``stream_guard.engine.Stream`` the ingest uses."""

    async def feed(self, data: bytes | np.ndarray) -> Any: ...

    def events(self) -> Any: ...

    async def close(self) -> SummaryEvent: ...


class StreamOpener(Protocol):
    """Opens one scored stream for 16-bit mono PCM at ``sample_rate``; ``labels`` say whose audio it is
    (``participant``, ``label``, ``peer``, ``protocol``) for the sinks. Raising refuses the track."""

    async def __call__(self, stream_id: str, sample_rate: int, labels: dict[str, str]) -> EngineStream: ...


class Channel(Protocol):
    """A signalling connection: ``websockets``' ServerConnection fits as is."""

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


def engine_opener(engine: Any, stream_config: Any = None) -> StreamOpener:
    """Adapt an :class:`stream_guard.engine.Engine` to :class:`StreamOpener` (16-bit mono PCM streams)."""
    from stream_guard.core import AudioFormat

    async def open_stream(stream_id: str, sample_rate: int, labels: dict[str, str]) -> EngineStream:
        fmt = AudioFormat(sample_rate, "pcm16", 1)
        if stream_config is None:
            return await engine.open_stream(stream_id, fmt)
        return await engine.open_stream(stream_id, fmt, stream_config)

    return open_stream


# ----------------------------------------------------------------------------------------------------
# one track


class TrackIngest:
    """Decode, resample and feed one remote audio track to its engine stream; end it with a reason.

    Two tasks: the receiver awaits ``track.recv()`` in a loop (so aiortc's unbounded queue never grows) and
    resamples into a bounded backlog; the feeder hands the backlog to ``stream.feed``. A track that delivers
    nothing for ``stall_timeout_s`` ends with ``stalled``; one whose peer goes away ends with ``ended``.
    """

    def __init__(
        self,
        track: Any,
        stream: EngineStream,
        stream_id: str,
        *,
        sample_rate: int,
        stall_timeout_s: float,
        backlog_frames: int,
    ) -> None:
        import av

        self.track = track
        self.stream = stream
        self.stream_id = stream_id
        self.stall_timeout_s = stall_timeout_s
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        self._backlog: deque[bytes] = deque()
        self._backlog_limit = backlog_frames
        self._ready = asyncio.Event()
        self._done = False
        self.frames_in = 0
        self.frames_dropped = 0
        self.samples_fed = 0
        self.first_frame_at: float | None = None
        self.reason = "open"
        self.mid: str | None = None
        self._rx: asyncio.Task[str] | None = None
        self._stopping = False
        self.on_pcm: Callable[[np.ndarray, float], None] | None = None

    async def run(self) -> str:
        """Run until the track ends or stalls; returns why (``ended``, ``stalled``, ``closed``, ``error``).

        Whatever ends the receiver, the frames already decoded are fed before this returns, so the stream's
        summary covers all the audio that arrived.
        """
        self._rx = asyncio.ensure_future(self._receive_loop())
        feeder = asyncio.ensure_future(self._feed_loop())
        try:
            await asyncio.wait({self._rx})
            if self._rx.cancelled():
                self.reason = "closed"
            elif self._rx.exception() is not None:
                log.error("webrtc: receiving %s failed: %r", self.stream_id, self._rx.exception())
                self.reason = "error"
            else:
                self.reason = self._rx.result()
            self._done = True
            self._ready.set()
            await feeder
        finally:
            for task in (self._rx, feeder):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
        return self.reason

    def stop(self) -> None:
        """End the track now (peer closing): ``run`` feeds what was received and returns ``closed``.

        The flag matters as much as the cancel: before Python 3.12, ``asyncio.wait_for`` drops a cancellation
        that arrives just as the awaited frame does, and frames arrive 50 times a second.
        """
        self._stopping = True
        if self._rx is not None and not self._rx.done():
            self._rx.cancel()

    async def _receive_loop(self) -> str:
        from aiortc.mediastreams import MediaStreamError

        while not self._stopping:
            try:
                frame = await asyncio.wait_for(self.track.recv(), timeout=self.stall_timeout_s)
            except asyncio.TimeoutError:
                return "stalled"
            except MediaStreamError:
                return "ended"
            now = time.time()
            if self.first_frame_at is None:
                self.first_frame_at = now
            self.frames_in += 1
            for out in self._resampler.resample(frame):
                pcm = out.to_ndarray().reshape(-1).astype("<i2", copy=False)
                if pcm.size == 0:
                    continue
                if self.on_pcm is not None:
                    self.on_pcm(pcm, now)
                if len(self._backlog) >= self._backlog_limit:
                    self._backlog.popleft()
                    self.frames_dropped += 1
                self._backlog.append(pcm.tobytes())
                self._ready.set()
        return "closed"

    async def _feed_loop(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._backlog:
                chunk = self._backlog.popleft()
                await self.stream.feed(chunk)
                self.samples_fed += len(chunk) // 2
            if self._done:
                return


# ----------------------------------------------------------------------------------------------------
# one peer


_peer_ids = itertools.count(1)


@dataclass
class _StreamSlot:
    stream_id: str
    label: TrackLabel
    ingest: TrackIngest
    task: asyncio.Task[str] | None = None
    pump: asyncio.Task[None] | None = None
    summary: SummaryEvent | None = None


@dataclass
class PeerInfo:
    """What the gateway reports about an open peer (``/metrics``, ``stats()``)."""

    peer_id: str
    client: str
    streams: list[str] = field(default_factory=list)
    state: str = "new"


class WebRTCSession:
    """One signalling connection and its peer connection, from offer to the last summary.

    Not a sans-I/O class (aiortc owns sockets), but everything it talks to comes in through its constructor:
    the channel (any object with ``recv``/``send``/``close``), the stream opener and the event callback.
    """

    def __init__(
        self,
        gateway: WebRTCGateway,
        channel: Channel,
        *,
        client: str = "",
    ) -> None:
        self.gateway = gateway
        self.config = gateway.config
        self.channel = channel
        self.peer_id = f"p{next(_peer_ids)}"
        self.info = PeerInfo(self.peer_id, client)
        self.pc: Any = None
        self.slots: list[_StreamSlot] = []
        self._send_lock = asyncio.Lock()
        self._channel_open = True
        self._tracks_done = asyncio.Event()
        self._connected = asyncio.Event()
        self._failed = asyncio.Event()
        self._ended = 0
        self.close_reason = "closed"

    # -- sending ---------------------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message; a vanished client is not an error (its streams still end cleanly)."""
        if not self._channel_open:
            return
        try:
            async with self._send_lock:
                await self.channel.send(json.dumps(message, separators=(",", ":"), allow_nan=False))
        except Exception:  # the websocket closed under us: remember it and stop sending
            self._channel_open = False

    async def _reject(self, err: SignallingError) -> None:
        log.info("webrtc %s: rejected (%s: %s)", self.peer_id, err.code, err.message)
        self.gateway.counters["rejected_" + err.code] = (
            self.gateway.counters.get("rejected_" + err.code, 0) + 1
        )
        await self.send({"type": "error", "code": err.code, "message": err.message, "fatal": True})
        await self._close_channel(err.close, err.message)

    async def _close_channel(self, code: int, reason: str) -> None:
        self._channel_open = False
        with contextlib.suppress(Exception):
            await self.channel.close(code, reason[:120])

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until the client leaves, the peer fails or every track has ended."""
        try:
            try:
                offer = await self._await_offer()
                await self._start_peer(offer)
            except SignallingError as err:
                await self._reject(err)
                return
            await self._serve()
        finally:
            await self._shutdown()

    async def _await_offer(self) -> Offer:
        deadline = time.monotonic() + self.config.offer_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SignallingError(
                    "timeout", f"no offer within {self.config.offer_timeout_s:g} s", CLOSE_IDLE
                )
            try:
                raw = await asyncio.wait_for(self.channel.recv(), timeout=remaining)
            except asyncio.TimeoutError:
                continue
            except Exception:
                raise SignallingError("gone", "the client closed the connection before an offer") from None
            msg = parse_message(raw, self.config.max_message_bytes)
            kind = msg["type"]
            if kind == "offer":
                return parse_offer(msg, self.config)
            if kind == "ping":
                await self.send({"type": "pong"})
                continue
            if kind == "bye":
                raise SignallingError("bye", "the client left before an offer", CLOSE_NORMAL)
            raise SignallingError("bad_message", f"expected an offer, got {kind!r}")

    async def _start_peer(self, offer: Offer) -> None:
        _require_aiortc()
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

        servers = [
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in self.config.ice_servers
        ]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.pc = pc
        self.gateway._register_pc(pc)
        tracks: list[Any] = []

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                tracks.append(track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            self.info.state = state
            if state == "connected":
                self._connected.set()
            elif state in ("failed", "closed"):
                self._failed.set()

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        except Exception as exc:
            raise SignallingError(
                "bad_sdp", f"the offer was refused ({type(exc).__name__}: {str(exc)[:160]})"
            ) from None
        self._prefer_codecs(pc)
        receivers = {id(t.receiver.track): t for t in pc.getTransceivers() if t.receiver.track is not None}
        used: set[str] = set()
        for n, track in enumerate(tracks):
            transceiver = receivers.get(id(track))
            mid = transceiver.mid if transceiver is not None else None
            label = offer.tracks.get(track.id) or (offer.tracks.get(str(mid)) if mid is not None else None)
            if label is None:
                label = offer.default if (offer.default and len(tracks) == 1) else None
            if label is None:
                base = offer.default.participant if offer.default else "track"
                label = TrackLabel(
                    f"{base}-{n + 1}", f"{offer.default.label if offer.default else 'track'} {n + 1}"
                )
            participant = label.participant
            k = 2
            while participant in used:
                participant = f"{label.participant}-{k}"
                k += 1
            used.add(participant)
            stream_id = f"webrtc-{self.peer_id}-{participant}"
            slot = await self._open_slot(track, stream_id, TrackLabel(participant, label.label))
            slot.ingest.mid = mid
        try:
            with loopback_candidates(self.config.loopback):
                answer = await pc.createAnswer()
                await pc.setLocalDescription(answer)
        except Exception as exc:
            raise SignallingError(
                "bad_sdp", f"no answer possible ({type(exc).__name__}: {str(exc)[:160]})"
            ) from None
        await self.send({"type": "answer", "sdp": pc.localDescription.sdp, "peer": self.peer_id})
        for slot in self.slots:
            await self.send(
                {
                    "type": "stream",
                    "stream": slot.stream_id,
                    "participant": slot.label.participant,
                    "label": slot.label.label,
                    "track": slot.ingest.track.id,
                    "mid": slot.ingest.mid,
                    "codec": self._codec_of(slot),
                }
            )
            slot.task = asyncio.ensure_future(self._run_slot(slot))
        log.info(
            "webrtc %s: %d audio track(s) from %s", self.peer_id, len(self.slots), self.info.client or "?"
        )

    def _prefer_codecs(self, pc: Any) -> None:
        """Answer with the configured codecs only, in their order of preference, and ask for good Opus.

        aiortc negotiates the codecs while applying the offer (before any preference could be set on its
        receive-only transceivers), so the negotiated list is filtered here, before the answer is written.
        The Opus ``maxaveragebitrate`` in the answer tells the sender how many bits the receiver wants: at a
        browser's default ~32 kbit/s, quiet noise-like sounds come out several dB too quiet and smeared, and
        those are exactly the details a synthetic-speech detector looks at.
        """
        order = [c.lower() for c in self.config.codecs]
        for t in pc.getTransceivers():
            codecs = getattr(t, "_codecs", None)
            if t.kind != "audio" or not codecs:
                continue
            kept = sorted(
                (c for c in codecs if c.name.lower() in order), key=lambda c: order.index(c.name.lower())
            )
            if not kept:
                raise SignallingError(
                    "no_common_codec",
                    f"the offer has none of the codecs this server accepts ({', '.join(self.config.codecs)})",
                    CLOSE_UNSUPPORTED_MEDIA,
                )
            for c in kept:
                if c.name.lower() == "opus" and self.config.opus_max_bitrate:
                    c.parameters["maxaveragebitrate"] = self.config.opus_max_bitrate
                    c.parameters.setdefault("useinbandfec", 1)
            t._codecs = kept

    def _codec_of(self, slot: _StreamSlot) -> str | None:
        for t in self.pc.getTransceivers():
            if t.receiver.track is slot.ingest.track and t._codecs:
                return str(t._codecs[0].name)
        return None

    async def _open_slot(self, track: Any, stream_id: str, label: TrackLabel) -> _StreamSlot:
        try:
            labels = {"participant": label.participant, "label": label.label, "peer": self.peer_id}
            labels["protocol"] = "webrtc"
            stream = await self.gateway.open_stream(stream_id, self.config.sample_rate, labels)
        except Exception as exc:
            raise SignallingError(
                "stream_refused", f"stream {stream_id} refused: {exc}", CLOSE_TRY_AGAIN
            ) from None
        ingest = TrackIngest(
            track,
            stream,
            stream_id,
            sample_rate=self.config.sample_rate,
            stall_timeout_s=self.config.stall_timeout_s,
            backlog_frames=self.config.backlog_frames,
        )
        if self.gateway.on_pcm is not None:
            hook = self.gateway.on_pcm
            ingest.on_pcm = lambda pcm, t, sid=stream_id: hook(sid, pcm, t)
        slot = _StreamSlot(stream_id, label, ingest)
        slot.pump = asyncio.ensure_future(self._pump_events(slot))
        self.slots.append(slot)
        self.info.streams.append(stream_id)
        return slot

    async def _pump_events(self, slot: _StreamSlot) -> None:
        """Forward the stream's events to this client and to the gateway's subscribers, until its summary."""
        async for event in slot.ingest.stream.events():
            await self.gateway._publish(event)
            await self.send({"type": "event", "event": event.to_dict()})
            if isinstance(event, SummaryEvent):
                slot.summary = event
                return

    async def _run_slot(self, slot: _StreamSlot) -> None:
        reason = "error"
        try:
            reason = await slot.ingest.run()
        except asyncio.CancelledError:
            reason = "closed"
        except Exception:
            log.exception("webrtc %s: track %s failed", self.peer_id, slot.stream_id)
        finally:
            await self._end_slot(slot, reason)

    async def _end_slot(self, slot: _StreamSlot, reason: str) -> None:
        with contextlib.suppress(Exception):
            await slot.ingest.stream.close()
        if slot.pump is not None:
            try:
                await asyncio.wait_for(asyncio.shield(slot.pump), timeout=5.0)
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
                slot.pump.cancel()
                with contextlib.suppress(BaseException):
                    await slot.pump
        self.gateway.counters["streams_ended_" + reason] = (
            self.gateway.counters.get("streams_ended_" + reason, 0) + 1
        )
        await self.send(
            {
                "type": "stream_end",
                "stream": slot.stream_id,
                "reason": reason,
                "frames": slot.ingest.frames_in,
                "frames_dropped": slot.ingest.frames_dropped,
            }
        )
        self._ended += 1
        if self._ended >= len(self.slots):
            self._tracks_done.set()

    async def _serve(self) -> None:
        """Read client messages while watching ICE, track ends and the connect deadline."""
        deadline = asyncio.ensure_future(self._connect_deadline())
        pending = {
            asyncio.ensure_future(self._read_loop()),
            asyncio.ensure_future(self._tracks_done.wait()),
            asyncio.ensure_future(self._failed.wait()),
            deadline,
        }
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if done == {deadline} and deadline.exception() is None:
                    continue  # connected in time: keep serving
                for task in done:
                    exc = task.exception()
                    if isinstance(exc, SignallingError):
                        await self._reject(exc)
                    elif exc is not None:
                        log.error("webrtc %s: signalling failed: %r", self.peer_id, exc)
                        self.close_reason = "internal_error"
                return
        finally:
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(BaseException):
                    await task

    async def _connect_deadline(self) -> None:
        """Returns once the media connection is up; raises ``ice_failed`` if it is not up in time."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout=self.config.connect_timeout_s)
        except asyncio.TimeoutError:
            raise SignallingError(
                "ice_failed",
                f"no media connection within {self.config.connect_timeout_s:g} s (check ICE servers)",
                CLOSE_TRY_AGAIN,
            ) from None

    async def _read_loop(self) -> None:
        while True:
            try:
                raw = await self.channel.recv()
            except Exception:
                self._channel_open = False
                self.close_reason = "client_gone"
                return
            msg = parse_message(raw, self.config.max_message_bytes)
            kind = msg["type"]
            if kind == "candidate":
                cand = parse_candidate(msg)
                try:
                    await self.pc.addIceCandidate(cand)
                except Exception as exc:
                    raise SignallingError("bad_candidate", f"candidate refused ({str(exc)[:120]})") from None
            elif kind == "ping":
                await self.send({"type": "pong"})
            elif kind == "bye":
                self.close_reason = "bye"
                return
            elif kind == "offer":
                raise SignallingError(
                    "renegotiation", "renegotiation is not supported: open a new connection"
                )
            else:
                raise SignallingError("bad_message", f"unknown message type {kind!r}")

    async def _shutdown(self) -> None:
        """Close the peer connection and end every stream with its summary; safe to run once in any state."""
        for slot in self.slots:
            slot.ingest.stop()
        for slot in self.slots:
            if slot.task is not None:
                with contextlib.suppress(Exception):
                    await slot.task
            else:  # opened but never started (the answer failed): still close the stream
                await self._end_slot(slot, "closed")
        if self.pc is not None:
            await close_peer_connection(self.pc)
        if self._channel_open:
            await self.send({"type": "bye", "reason": self.close_reason})
            await self._close_channel(CLOSE_NORMAL, self.close_reason)


# ----------------------------------------------------------------------------------------------------
# all peers


class WebRTCGateway:
    """Admits peers under the configured limits, runs a :class:`WebRTCSession` per signalling connection.

    ``open_stream`` opens an engine stream for 16-bit mono PCM (see :func:`engine_opener`); ``on_event``
    receives every event of every WebRTC stream, in order (the server publishes them on ``/v1/events``; it
    may be a coroutine function, awaited before the client gets the event). ``on_pcm`` (diagnostics,
    benchmarks) sees each resampled chunk with its arrival time.
    """

    def __init__(
        self,
        open_stream: StreamOpener,
        config: WebRTCConfig | None = None,
        *,
        on_event: Callable[[Event], Any] | None = None,
        on_pcm: Callable[[str, np.ndarray, float], None] | None = None,
    ) -> None:
        _require_aiortc()
        for name in ("aioice", "aiortc"):  # they log every candidate pair at INFO: noise in a server's log
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(logging.WARNING)
        self.open_stream = open_stream
        self.config = config or WebRTCConfig()
        self.on_event = on_event
        self.on_pcm = on_pcm
        self.sessions: set[WebRTCSession] = set()
        self.counters: dict[str, int] = {"peers_total": 0, "rejected_too_many_peers": 0}
        self._pcs: weakref.WeakSet[Any] = weakref.WeakSet()
        self._closing = False

    def _register_pc(self, pc: Any) -> None:
        self._pcs.add(pc)

    async def _publish(self, event: Event) -> None:
        if self.on_event is None:
            return
        try:
            result = self.on_event(event)
            if inspect.isawaitable(result):
                await result
        except Exception:  # a failing sink must not end the stream
            log.exception("webrtc: event subscriber failed")

    async def handle(self, channel: Channel, *, client: str = "") -> None:
        """Serve one signalling connection to its end (the websocket handler of ``/v1/webrtc``)."""
        if self._closing or len(self.sessions) >= self.config.max_peers:
            session = WebRTCSession(self, channel, client=client)
            reason = (
                "the server is shutting down"
                if self._closing
                else (f"too many WebRTC peers (limit {self.config.max_peers}); retry later")
            )
            await session._reject(SignallingError("too_many_peers", reason, CLOSE_TRY_AGAIN))
            return
        session = WebRTCSession(self, channel, client=client)
        self.sessions.add(session)
        self.counters["peers_total"] += 1
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    def open_peer_connections(self) -> int:
        """Peer connections created by this gateway and not yet closed (a leak shows up here)."""
        return sum(1 for pc in list(self._pcs) if pc.connectionState != "closed")

    def stats(self) -> dict[str, Any]:
        """Counters for ``/metrics`` and tests: open peers and streams, totals, rejections by reason."""
        return {
            "peers": len(self.sessions),
            "peer_connections": self.open_peer_connections(),
            "streams": sum(
                1 for s in self.sessions for slot in s.slots if slot.task is not None and not slot.task.done()
            ),
            **self.counters,
        }

    async def aclose(self, grace_s: float = 10.0) -> None:
        """Server shutdown: refuse new peers, end every stream (each client still gets its summaries and a
        ``bye`` with reason ``server_shutdown``), then close what is left with 1001 (going away)."""
        self._closing = True
        for session in list(self.sessions):
            session.close_reason = "server_shutdown"
            if session.slots:
                for slot in session.slots:
                    slot.ingest.stop()
            else:  # still negotiating: nothing to summarise
                await session._close_channel(CLOSE_GOING_AWAY, "server shutting down")
        deadline = time.monotonic() + grace_s
        while self.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            await session._close_channel(CLOSE_GOING_AWAY, "server shutting down")
        while self.sessions and time.monotonic() < deadline + 5.0:
            await asyncio.sleep(0.05)


def server_gateway(server: Any, config: WebRTCConfig | None = None) -> WebRTCGateway:
    """The gateway behind ``/v1/webrtc`` in ``stream-guard serve``
    (:class:`stream_guard.server.app.StreamGuardServer`).

    WebRTC streams are the server's streams like any other: they count against ``limits.max_streams`` (a
    track over the limit is refused with ``stream_refused``), they use the server's hop, and their events go
    through ``server.publish`` (``/v1/events``, metrics, JSON lines, webhooks with the participant's labels).
    A server bound to a loopback address gathers loopback ICE candidates unless ``config`` says otherwise.
    """
    from stream_guard.core import AudioFormat, StreamConfig
    from stream_guard.server.app import ActiveStream
    from stream_guard.server.config import is_loopback

    if config is None:
        config = WebRTCConfig(
            loopback=is_loopback(server.config.host),
            ice_servers=tuple(IceServer.parse(s) for s in getattr(server.config, "ice_servers", ())),
            max_peers=getattr(server.config, "webrtc_max_peers", WebRTCConfig.max_peers),
        )

    async def open_stream(stream_id: str, sample_rate: int, labels: dict[str, str]) -> EngineStream:
        limit = server.config.limits.max_streams
        if len(server.active) >= limit:
            server.metrics.rejects.labels("max_streams").inc()
            raise RuntimeError(f"server at capacity ({limit} streams)")
        fmt = AudioFormat(sample_rate, "pcm16", 1)
        stream = await server.engine.open_stream(
            stream_id, fmt, StreamConfig(hop_s=server.config.hop_s, realtime=True)
        )
        server.active[stream_id] = ActiveStream(stream, "webrtc", dict(labels), fmt, time.monotonic())
        server.metrics.streams.labels("webrtc").inc()
        server.metrics.active_streams.labels("webrtc").inc()
        return stream

    async def on_event(event: Event) -> None:
        active = server.active.get(event.stream)
        if active is None:
            server.hub.publish(event)
            return
        await server.publish(event, active)
        if isinstance(event, SummaryEvent):
            server.active.pop(event.stream, None)
            server.metrics.active_streams.labels("webrtc").dec()

    return WebRTCGateway(open_stream, config, on_event=on_event)


# ----------------------------------------------------------------------------------------------------
# Python client (plugins written in Python, the example, tests and benchmarks)


def _pcm_track_class() -> type:
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    class PcmAudioTrack(MediaStreamTrack):
        """Plays a mono float32 array as a live audio track, paced in real time (20 ms frames).

        aiortc's sender pulls frames as fast as ``recv`` returns, so the track sleeps to the wall clock like a
        microphone would; at the end it raises ``MediaStreamError`` and the remote side sees the audio stop.
        """

        kind = "audio"

        def __init__(self, audio: np.ndarray, sample_rate: int, *, ptime: float = 0.020) -> None:
            super().__init__()
            data = np.asarray(audio, dtype=np.float32).reshape(-1)
            self._pcm = (np.clip(data, -1.0, 1.0) * 32767.0).astype("<i2")
            self.sample_rate = int(sample_rate)
            self._step = max(1, int(round(ptime * sample_rate)))
            self._pos = 0
            self._start: float | None = None
            self.started_at: float | None = None

        async def recv(self) -> Any:
            import fractions

            from av import AudioFrame

            if self.readyState != "live" or self._pos >= len(self._pcm):
                self.stop()
                raise MediaStreamError
            if self._start is None:
                self._start = time.monotonic()
                self.started_at = time.time()
            else:
                wait = self._start + self._pos / self.sample_rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            chunk = self._pcm[self._pos : self._pos + self._step]
            if len(chunk) < self._step:
                chunk = np.pad(chunk, (0, self._step - len(chunk)))
            # Stereo on purpose: aiortc's Opus encoder upmixes mono input with a -3 dB pan law, which would
            # make the server hear the file 3 dB quieter than it is; identical channels downmix back exactly.
            frame = AudioFrame(format="s16", layout="stereo", samples=self._step)
            frame.planes[0].update(np.repeat(chunk, 2).tobytes())
            frame.pts = self._pos
            frame.sample_rate = self.sample_rate
            frame.time_base = fractions.Fraction(1, self.sample_rate)
            self._pos += self._step
            return frame

    return PcmAudioTrack


def pcm_audio_track(audio: np.ndarray, sample_rate: int) -> Any:
    """A live aiortc audio track that plays ``audio`` (mono float32 in [-1, 1]) once, in real time."""
    return _pcm_track_class()(audio, sample_rate)


@dataclass
class ClientTrack:
    """A track a :class:`WebRTCClient` sends: any aiortc audio track, its participant id and display label."""

    track: Any
    participant: str
    label: str = ""
    codec: str | None = None  # "opus", "PCMU" or "PCMA" to force one; None lets the server choose


class WebRTCClient:
    """Send audio tracks to a stream-guard server over WebRTC and read back the events of their streams.

    ``url`` is the signalling websocket (``ws://host:8080/v1/webrtc?token=...``). Use as an async context
    manager; :meth:`messages` yields the server's messages (``stream``, ``event``, ``stream_end``, ``error``,
    ``bye``) until the server closes the connection; :meth:`bye` ends the session politely.
    """

    def __init__(
        self,
        url: str,
        tracks: list[ClientTrack],
        *,
        ice_servers: tuple[IceServer, ...] = (),
        loopback: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not tracks:
            raise ValueError("a WebRTC client needs at least one track")
        self.url = url
        self.tracks = tracks
        self.ice_servers = ice_servers
        self.loopback = loopback
        self.headers = headers or {}
        self.ws: Any = None
        self.pc: Any = None
        self.peer_id: str | None = None
        self.streams: dict[str, dict[str, Any]] = {}

    async def __aenter__(self) -> WebRTCClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the websocket, send the offer, apply the answer. Raises ``ConnectionError`` if refused."""
        from aiortc import (
            RTCConfiguration,
            RTCIceServer,
            RTCPeerConnection,
            RTCRtpSender,
            RTCSessionDescription,
        )
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus

        where = self.url.split("?", 1)[0]  # never echo a token
        try:
            self.ws = await connect(self.url, proxy=None, additional_headers=self.headers, open_timeout=10)
        except InvalidStatus as exc:
            body = exc.response.body.decode("utf-8", "replace").strip()[:200]
            raise ConnectionError(f"{where}: refused with HTTP {exc.response.status_code} ({body})") from None
        except (InvalidHandshake, OSError, asyncio.TimeoutError) as exc:
            raise ConnectionError(f"{where}: cannot connect ({exc})") from None
        servers = [
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in self.ice_servers
        ]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        labels: dict[str, dict[str, str]] = {}
        for spec in self.tracks:
            transceiver = self.pc.addTransceiver(spec.track, direction="sendonly")
            if spec.codec is not None:
                caps = RTCRtpSender.getCapabilities("audio").codecs
                transceiver.setCodecPreferences([c for c in caps if c.name.lower() == spec.codec.lower()])
            labels[spec.track.id] = {"participant": spec.participant, "label": spec.label or spec.participant}
        with loopback_candidates(self.loopback):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = {"type": "offer", "sdp": self.pc.localDescription.sdp, "tracks": labels}
        with contextlib.suppress(Exception):  # a server at its limit refuses before reading the offer
            await self.ws.send(json.dumps(offer))
        while True:
            try:
                msg = json.loads(await self.ws.recv())
            except Exception:
                code, reason = self.ws.close_code, self.ws.close_reason
                await self.close()
                raise ConnectionError(f"{where}: closed before an answer ({code} {reason})") from None
            if msg.get("type") == "answer":
                self.peer_id = msg.get("peer")
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
                return
            if msg.get("type") == "error":
                await self.close()
                raise ConnectionError(f"{where}: refused ({msg.get('code')}: {msg.get('message')})")

    async def messages(self) -> Any:
        """Yield the server's messages as dicts until the connection closes."""
        while True:
            try:
                raw = await self.ws.recv()
            except Exception:
                return
            msg = json.loads(raw)
            if msg.get("type") == "stream":
                self.streams[msg["stream"]] = msg
            yield msg

    async def bye(self) -> None:
        """Tell the server this client is done: its streams end with their summaries, then it closes."""
        with contextlib.suppress(Exception):
            await self.ws.send(json.dumps({"type": "bye"}))

    async def close(self) -> None:
        """Close the peer connection and the websocket (idempotent)."""
        if self.pc is not None:
            await close_peer_connection(self.pc)
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
