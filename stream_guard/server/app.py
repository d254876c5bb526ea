"""The network server: one ``websockets`` asyncio server for every ingest protocol, events, health and
metrics.

This module is the thin asyncio adapter around the sans-I/O parsers (:mod:`stream_guard.protocols`): it reads
websocket messages, hands them to the connection's parser and carries out the actions the parser returns
(open / feed / stop engine streams, send replies, close with a code). Everything a stream produces goes to the
sinks: the native client's own socket, ``/v1/events`` subscribers, Prometheus metrics, JSON lines and signed
webhooks (alerts and summaries, from the durable outbox).

Routes (plain HTTP GET is answered through ``process_request``, before any websocket handshake):

==================  ==========================================================================
``/healthz``        ``200 ok`` while serving, ``503 draining`` during shutdown
``/metrics``        Prometheus text exposition
``/v1/stream``      native protocol (:mod:`stream_guard.protocols.native`)
``/v1/events``      event subscription: ``?stream=ID`` (repeatable) or ``?prefix=P``; default all
``/v1/ingest``      auto-detected protocol
``/twilio`` ...     ``/telnyx``, ``/plivo``, ``/exotel``, ``/vonage``, ``/audiohook``
``/v1/webrtc``      WebRTC signalling (:mod:`stream_guard.sources.webrtc`, the ``webrtc`` extra)
==================  ==========================================================================

Bad input closes only the offending connection, with the parser's close code and reason; the streams it had
opened are still finished and summarised (what was accepted is not lost). No peer input can raise out of a
connection handler, so nothing is logged as an unhandled exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import sqlite3
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from stream_guard.core.formats import AudioFormat
from stream_guard.core.stream import StreamClosedError, StreamConfig
from stream_guard.dashboard import dashboard_response, same_origin
from stream_guard.engine import Engine
from stream_guard.engine.stream import Stream
from stream_guard.events import AlertEvent, Event, ScoreEvent, SummaryEvent
from stream_guard.protocols import (
    Action,
    Audio,
    EndSession,
    Notice,
    ProtocolError,
    Reply,
    StartStream,
    StopStream,
    make_parser,
)
from stream_guard.protocols.base import (
    CLOSE_IDLE,
    CLOSE_INTERNAL,
    CLOSE_MAX_DURATION,
    CLOSE_POLICY,
    CLOSE_TOO_MANY_STREAMS,
    CLOSE_UNSUPPORTED_DATA,
)
from stream_guard.protocols.detect import AutoDetectParser
from stream_guard.server.auth import (
    any_match,
    bearer_token,
    check_audiohook_signature,
    check_twilio,
    origin_allowed,
)
from stream_guard.server.config import ServerConfig
from stream_guard.server.hub import EventHub
from stream_guard.server.limits import ConnectionLimiter
from stream_guard.sinks.metrics import ServerMetrics

log = logging.getLogger("stream_guard.server")

ROUTES = {
    "/v1/stream": "native",
    "/v1/ingest": "auto",
    "/v1/events": "events",
    "/twilio": "twilio",
    "/telnyx": "telnyx",
    "/plivo": "plivo",
    "/exotel": "exotel",
    "/vonage": "vonage",
    "/audiohook": "audiohook",
    "/v1/webrtc": "webrtc",
}


@dataclass(eq=False)
class ActiveStream:
    """An engine stream opened by a connection, with what the sinks need to know about it."""

    stream: Stream
    protocol: str
    labels: dict[str, str]
    fmt: AudioFormat
    started: float
    consumer: asyncio.Task[None] | None = None
    audio_bytes: int = 0
    first_score: bool = False


@dataclass
class ServerState:
    """Counters visible to tests and ``/healthz`` without scraping metrics."""

    connections: int = 0
    sessions_closed_for_errors: int = 0
    last_errors: list[tuple[int, str]] = field(default_factory=list)


class StreamGuardServer:
    """``stream-guard serve``: start with :meth:`start`, stop gracefully with :meth:`stop` (or ``async
    with``)."""

    def __init__(self, config: ServerConfig, engine: Engine | None = None) -> None:
        self.config = config.validate()
        self.metrics = ServerMetrics()
        self.hub = EventHub()
        self.engine = engine
        self._owns_engine = engine is None
        self.active: dict[str, ActiveStream] = {}
        self.sessions: set[Session] = set()
        self.state = ServerState()
        self.draining = False
        self.dispatcher: Any = None
        self._dispatcher_task: asyncio.Task[None] | None = None
        self._outbox: Any = None
        self._jsonl: Any = None
        self._server: Server | None = None
        self._ids = itertools.count(1)
        self.port: int = config.port
        self.webrtc: Any = None  # /v1/webrtc (stream_guard.sources.webrtc) when aiortc is installed

    # -- lifecycle --
    async def start(self) -> None:
        cfg = self.config
        if self.engine is None:
            self.engine = Engine.from_bundle(
                cfg.model,
                provider=cfg.provider,
                threads=cfg.threads,
                config=cfg.engine_config(),
            )
        await self.engine.start()
        with contextlib.suppress(ImportError, RuntimeError):  # WebRTC is the optional [webrtc] extra
            from stream_guard.sources.webrtc import server_gateway

            self.webrtc = server_gateway(self)
        if cfg.webhooks:
            from stream_guard.sinks.outbox import Outbox
            from stream_guard.sinks.webhooks import WebhookDispatcher

            self._outbox = Outbox(cfg.outbox_path)
            self.dispatcher = WebhookDispatcher(self._outbox, list(cfg.webhooks))
            self.dispatcher.on_result = lambda _p, r: self.metrics.webhook_attempts.labels(
                str(r.status) if r.status is not None else "network_error"
            ).inc()
            self.metrics.set_outbox_source(self._outbox.counts)
            self._dispatcher_task = asyncio.get_running_loop().create_task(self.dispatcher.run())
        if cfg.jsonl_path:
            from stream_guard.sinks.jsonl import JsonlSink

            self._jsonl = JsonlSink(cfg.jsonl_path)
        tls = None
        if cfg.tls_cert and cfg.tls_key:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        self._server = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            max_size=cfg.limits.max_message_bytes,
            max_queue=64,
            open_timeout=cfg.limits.handshake_timeout_s,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=5,
            compression=None,
            ssl=tls,
            logger=logging.getLogger("stream_guard.server.websockets"),
        )
        sockets = list(self._server.sockets)
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("stream-guard serving on %s:%d (%s)", cfg.host, self.port, self.engine.metadata.name)

    async def stop(self) -> None:
        """Graceful shutdown: refuse new connections, finish every stream (summaries), flush the outbox."""
        if self.draining:
            return
        self.draining = True
        if self._server is not None:
            self._server.server.close()  # stop accepting; Server.close() is once-only, called below
        if self.webrtc is not None:
            await self.webrtc.aclose()
        await asyncio.gather(*(s.shutdown() for s in list(self.sessions)), return_exceptions=True)
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
        self.hub.close()
        if self.dispatcher is not None:
            counts = await self.dispatcher.flush(self.config.shutdown_grace_s)
            self.dispatcher.close()
            if self._dispatcher_task is not None:
                await self._dispatcher_task
            if counts["pending"]:
                log.warning(
                    "%d webhook(s) still pending; they will be sent on the next start", counts["pending"]
                )
            self._outbox.close()
        if self._owns_engine and self.engine is not None:
            await self.engine.close()
        if self._jsonl is not None:
            self._jsonl.close()

    async def __aenter__(self) -> StreamGuardServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- HTTP --
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            if self.draining:
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            headers = Headers([("Content-Type", self.metrics.content_type)])
            return Response(200, "OK", headers, self.metrics.render())
        page = dashboard_response(path)  # the live dashboard's static files at /
        if page is not None:
            return page
        route = ROUTES.get(path)
        if route is None:
            return connection.respond(HTTPStatus.NOT_FOUND, f"no such endpoint: {path[:100]}\n")
        if self.draining:
            return self._reject(
                connection, HTTPStatus.SERVICE_UNAVAILABLE, "draining", "server is shutting down\n"
            )
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return connection.respond(HTTPStatus.UPGRADE_REQUIRED, f"{path} takes websocket connections\n")
        origin = request.headers.get("Origin")
        # the dashboard served from here (any host name only when a token is required anyway)
        own_page = same_origin(origin, request.headers.get("Host"), any_host=self.config.auth)
        if not (own_page or origin_allowed(origin, self.config.allowed_origins)):
            return self._reject(connection, HTTPStatus.FORBIDDEN, "origin", "origin not allowed\n")
        if self.config.auth:
            problem = self._authenticate(route, request)
            if problem:
                return self._reject(connection, HTTPStatus.UNAUTHORIZED, "auth", problem + "\n")
        if self.state.connections >= self.config.limits.max_connections:
            return self._reject(
                connection, HTTPStatus.SERVICE_UNAVAILABLE, "max_connections", "too many connections\n"
            )
        return None

    def _reject(self, connection: ServerConnection, status: HTTPStatus, reason: str, text: str) -> Response:
        self.metrics.rejects.labels(reason).inc()
        return connection.respond(status, text)

    def _authenticate(self, route: str, request: Request) -> str | None:
        cfg = self.config
        headers = request.headers
        if route == "twilio" and cfg.twilio_auth_token:
            url = self._public_url(request)
            if check_twilio(cfg.twilio_auth_token, headers.get("X-Twilio-Signature"), url):
                return None
            return "invalid or missing X-Twilio-Signature"
        if route == "audiohook" and cfg.audiohook_api_keys:
            secrets = dict(entry.partition(":")[::2] for entry in cfg.audiohook_api_keys)
            return check_audiohook_signature(headers, request.path, secrets, time.time())
        if any_match(bearer_token(headers, request.path), cfg.tokens):
            return None
        return "a valid bearer token is required (Authorization header or ?token=)"

    def _public_url(self, request: Request) -> str:
        if self.config.public_url:
            return self.config.public_url.rstrip("/") + request.path
        scheme = "wss" if self.config.tls_cert else "ws"
        return f"{scheme}://{request.headers.get('Host', '')}{request.path}"

    # -- websocket connections --
    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        route = ROUTES[urlsplit(ws.request.path).path]
        self.state.connections += 1
        self.metrics.connections.labels(route).inc()
        try:
            if route == "events":
                await self._events(ws)
            elif route == "webrtc":
                if self.webrtc is None:
                    await ws.close(4501, "WebRTC ingest needs aiortc: pip install 'stream-guard[webrtc]'")
                else:
                    await self.webrtc.handle(ws, client=str(ws.remote_address[0]))
            else:
                session = Session(self, ws, route, f"c{next(self._ids)}")
                self.sessions.add(session)
                try:
                    await session.run()
                finally:
                    self.sessions.discard(session)
        except Exception:  # a bug, not bad input: keep serving the other connections, report it once
            log.exception("internal error on %s", ws.request.path)
            with contextlib.suppress(Exception):
                await ws.close(CLOSE_INTERNAL, "internal error")
        finally:
            self.state.connections -= 1
            self.metrics.connections.labels(route).dec()

    async def _events(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        sub = self.hub.subscribe(frozenset(query.get("stream", [])), tuple(query.get("prefix", [])))

        async def sender() -> None:
            reported = 0
            while (text := await sub.get()) is not None:
                if sub.dropped > reported:
                    await ws.send(f'{{"type":"dropped","count":{sub.dropped - reported}}}')
                    reported = sub.dropped
                await ws.send(text)

        task = asyncio.get_running_loop().create_task(sender())
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    await ws.close(CLOSE_UNSUPPORTED_DATA, "/v1/events takes no binary messages")
                    break
        except ConnectionClosed:
            pass
        finally:
            self.hub.unsubscribe(sub)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await task

    # -- sinks --
    async def publish(self, event: Event, active: ActiveStream) -> None:
        """Send one event to every sink (metrics, subscribers, JSON lines, webhooks)."""
        self.hub.publish(event)
        if self._jsonl is not None:
            try:
                self._jsonl.write(event)
            except OSError as exc:  # a full disk must not stop scoring or alerting
                self._sink_failed("jsonl", exc)
        if isinstance(event, ScoreEvent):
            if not math.isfinite(event.score):  # abstained without inference: nothing scored, no latency
                self.metrics.skipped.inc()
            else:
                self.metrics.windows.inc()
                self.metrics.latency.observe(event.latency_ms / 1000.0)
                if not active.first_score:
                    active.first_score = True
                    self.metrics.first_score.observe(time.monotonic() - active.started)
        elif isinstance(event, AlertEvent):
            self.metrics.alerts.labels(event.state).inc()
        elif isinstance(event, SummaryEvent):
            self.metrics.dropped.inc(event.windows_dropped)
        if self.dispatcher is not None and isinstance(event, (AlertEvent, SummaryEvent)):
            try:
                await self.dispatcher.submit(event, active.labels)
            except (OSError, sqlite3.Error) as exc:
                self._sink_failed("webhook outbox", exc)

    def _sink_failed(self, sink: str, exc: Exception) -> None:
        self.metrics.errors.labels("sink", sink).inc()
        log.error("%s sink failed: %s", sink, exc)


class Session:
    """One websocket connection running one protocol parser."""

    def __init__(self, server: StreamGuardServer, ws: ServerConnection, route: str, conn_id: str) -> None:
        self.server = server
        self.ws = ws
        self.conn_id = conn_id
        options: dict[str, Any] = {}
        if route in ("plivo", "auto"):
            options["content_type"] = server.config.plivo_content_type
        self.parser = make_parser(route, conn_id, **options)
        lim = server.config.limits
        self.limiter = ConnectionLimiter(lim.max_messages_per_s, lim.max_bytes_per_s)
        self.streams: dict[str, ActiveStream] = {}
        self.opened_at = self.last_message = time.monotonic()
        self.closing = False
        self._children: dict[tuple[int, str], Any] = {}
        self._closer: asyncio.Task[None] | None = None

    @property
    def protocol(self) -> str:
        return self.parser.protocol if isinstance(self.parser, AutoDetectParser) else self.parser.name

    async def run(self) -> None:
        watchdog = asyncio.get_running_loop().create_task(self._watchdog())
        try:
            await self._loop()
        except ConnectionClosed:
            pass
        finally:
            watchdog.cancel()
            if self._closer is not None:
                await self._closer
            for action in self.parser.receive_eof():
                if isinstance(action, StopStream):
                    await self._stop(action.stream_id)
            await self._stop_all()

    async def shutdown(self) -> None:
        """Server shutdown: finish this connection's streams (summaries go out), then close with 1001."""
        self.closing = True
        summaries = await self._stop_all()
        with contextlib.suppress(Exception):
            for reply in self.parser.goodbye(summaries):
                if isinstance(reply, Reply):
                    await self.ws.send(reply.message)
        await self._close(1001, "server shutting down")
        if self._closer is not None:
            await self._closer

    async def _watchdog(self) -> None:
        """Idle timeout and maximum duration, checked by one timer per connection rather than per message."""
        lim = self.server.config.limits
        while not self.closing:
            now = time.monotonic()
            idle_left = self.last_message + lim.idle_timeout_s - now
            duration_left = self.opened_at + lim.max_stream_s - now
            if duration_left <= 0:
                await self._close(CLOSE_MAX_DURATION, f"maximum duration of {lim.max_stream_s:g} s reached")
                return
            if idle_left <= 0:
                await self._close(CLOSE_IDLE, f"idle for {lim.idle_timeout_s:g} s")
                return
            await asyncio.sleep(min(idle_left, duration_left) + 0.001)

    async def _loop(self) -> None:
        metrics = self.server.metrics
        async for message in self.ws:
            self.last_message = now = time.monotonic()
            if self.closing:
                continue  # draining until the peer answers our close frame
            problem = self.limiter.admit(len(message), now)
            if problem:
                metrics.rejects.labels("rate_limit").inc()
                await self._fail(ProtocolError(CLOSE_POLICY, problem))
                continue
            if isinstance(message, str):
                actions = self.parser.receive_text(message)
            else:
                actions = self.parser.receive_binary(message)
            self._counter(metrics.messages).inc()
            await self._apply(actions)

    def _counter(self, family: Any) -> Any:
        """The family's child for this connection's protocol, cached (``labels()`` is costly per message)."""
        key = (id(family), self.protocol)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(self.protocol)
        return child

    async def _apply(self, actions: list[Action]) -> bool:
        """Carry out a parser's actions; False when the connection is finished."""
        for action in actions:
            if isinstance(action, Audio):
                active = self.streams.get(action.stream_id)
                if active is None or active.stream.closed:
                    continue
                with contextlib.suppress(StreamClosedError):
                    await active.stream.feed(action.data)
                active.audio_bytes += len(action.data)
                self._counter(self.server.metrics.audio_seconds).inc(
                    len(action.data) / (active.fmt.bytes_per_frame * active.fmt.sample_rate)
                )
            elif isinstance(action, StartStream):
                if not await self._start(action):
                    return False
            elif isinstance(action, StopStream):
                await self._stop(action.stream_id)
            elif isinstance(action, Reply):
                await self.ws.send(action.message)
            elif isinstance(action, Notice):
                self.server.metrics.notices.labels(self.protocol, action.kind).inc()
            elif isinstance(action, EndSession):
                summaries = {}
                for stop in self.parser.end_streams(action.reason):
                    if isinstance(stop, StopStream):
                        summary = await self._stop(stop.stream_id)
                        if summary is not None:
                            summaries[stop.stream_id] = summary
                for reply in self.parser.session_ended(summaries):
                    if isinstance(reply, Reply):
                        await self.ws.send(reply.message)
                if action.close:
                    await self._close(1000, "session closed")
                    return False
            elif isinstance(action, ProtocolError):
                await self._fail(action)
                return False
        return True

    async def _start(self, action: StartStream) -> bool:
        server = self.server
        assert server.engine is not None
        if len(server.active) >= server.config.limits.max_streams:
            server.metrics.rejects.labels("max_streams").inc()
            await self._fail(
                ProtocolError(
                    CLOSE_TOO_MANY_STREAMS, f"server at capacity ({server.config.limits.max_streams} streams)"
                )
            )
            return False
        fmt = AudioFormat(action.fmt.sample_rate, action.fmt.encoding, action.fmt.channels)
        config = StreamConfig(hop_s=server.config.hop_s, emit_map=action.emit_map, realtime=True)
        try:
            stream = await server.engine.open_stream(action.stream_id, fmt, config)
        except ValueError as exc:
            server.metrics.rejects.labels("duplicate_stream").inc()
            await self._fail(ProtocolError(CLOSE_POLICY, str(exc)))
            return False
        active = ActiveStream(stream, self.protocol, dict(action.labels), fmt, time.monotonic())
        self.streams[action.stream_id] = active
        server.active[action.stream_id] = active
        server.metrics.streams.labels(self.protocol).inc()
        server.metrics.active_streams.labels(self.protocol).inc()
        active.consumer = asyncio.get_running_loop().create_task(self._consume(active))
        return True

    async def _consume(self, active: ActiveStream) -> None:
        to_socket = self.protocol == "native"
        async for event in active.stream.events():
            await self.server.publish(event, active)
            if to_socket:
                with contextlib.suppress(ConnectionClosed):
                    await self.ws.send(event.to_json())

    async def _stop(self, stream_id: str) -> SummaryEvent | None:
        active = self.streams.pop(stream_id, None)
        if active is None:
            return None
        try:
            summary = await active.stream.close()
            if active.consumer is not None:
                await active.consumer
        finally:
            self.server.active.pop(stream_id, None)
            self.server.metrics.active_streams.labels(active.protocol).dec()
        return summary

    async def _stop_all(self) -> Mapping[str, SummaryEvent]:
        ids = list(self.streams)
        results = await asyncio.gather(*(self._stop(i) for i in ids), return_exceptions=True)
        return {i: r for i, r in zip(ids, results, strict=True) if isinstance(r, SummaryEvent)}

    async def _fail(self, error: ProtocolError) -> None:
        self.server.metrics.errors.labels(self.protocol, str(error.code)).inc()
        self.server.state.sessions_closed_for_errors += 1
        self.server.state.last_errors = [*self.server.state.last_errors[-19:], (error.code, error.reason)]
        log.info("closing %s (%s): %d %s", self.conn_id, self.protocol, error.code, error.reason)
        await self._close(error.code, error.reason)

    async def _close(self, code: int, reason: str) -> None:
        """Start the closing handshake without waiting for it: the receive loop keeps draining (and
        discarding) the peer's messages meanwhile, or frames queued behind the close would stall it until
        the timeout."""
        self.closing = True
        if self._closer is None:
            self._closer = asyncio.get_running_loop().create_task(self._close_ws(code, reason))

    async def _close_ws(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)
