"""``stream-guard serve``: score live calls arriving over websockets (native protocol and six telephony
platforms).

Options come from flags, a config file (``--config serve.toml``; flags win) and, for secrets, the environment
(``STREAM_GUARD_TOKEN``, ``TWILIO_AUTH_TOKEN``, ``STREAM_GUARD_WEBHOOK_SECRET``) so they stay out of process
listings. See docs/serve.md for endpoints, protocols, close codes and webhook verification.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from dataclasses import replace
from typing import Any

from stream_guard.cli.common import (
    ModelChoice,
    UserError,
    add_model_options,
    load_backend,
    positive_float,
    positive_int,
)

EPILOG = """\
examples:
  stream-guard serve --no-auth                                   development, loopback only
  STREAM_GUARD_TOKEN=s3cret stream-guard serve --host 0.0.0.0 --tls-cert c.pem --tls-key k.pem
  stream-guard serve --token s3cret --webhook https://hooks.example.com/sg --webhook-secret whsec_...
  stream-guard serve --config serve.toml

endpoints: /v1/stream (native), /v1/events, /v1/ingest (auto-detect), /twilio, /telnyx, /plivo, /exotel,
/vonage, /audiohook, /v1/webrtc (WebRTC signalling), plus GET /healthz, /metrics and the live dashboard at /.
"""

LIMIT_FLAGS = {
    "max_connections": ("--max-connections", positive_int, "concurrent websocket connections (512)"),
    "max_streams": ("--max-streams", positive_int, "concurrent streams; more are refused with 4429 (256)"),
    "max_message_bytes": ("--max-message-bytes", positive_int, "largest websocket message (1 MiB)"),
    "max_messages_per_s": ("--max-messages-per-s", positive_float, "per-connection message rate (200)"),
    "max_bytes_per_s": ("--max-bytes-per-s", positive_float, "per-connection byte rate (512000)"),
    "idle_timeout_s": ("--idle-timeout", positive_float, "close a connection silent this long, s (30)"),
    "max_stream_s": ("--max-duration", positive_float, "longest connection, s (14400)"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="websocket server for live calls (native, Twilio, Telnyx, Plivo, Exotel, Vonage, AudioHook)",
        description="Score live audio streams arriving over websockets; alert by signed webhooks.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="TOML or JSON file with ServerConfig fields")
    net = parser.add_argument_group("network")
    net.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    net.add_argument("--port", type=int, default=None, help="port (default 8765; 0 picks a free one)")
    net.add_argument("--tls-cert", default=None, metavar="PEM", help="TLS certificate chain")
    net.add_argument("--tls-key", default=None, metavar="PEM", help="TLS private key")
    net.add_argument(
        "--public-url", default=None, metavar="URL", help="URL platforms use (Twilio signatures)"
    )
    net.add_argument(
        "--allow-origin", action="append", default=None, metavar="ORIGIN", help="browser origin to accept"
    )
    auth = parser.add_argument_group("authentication")
    auth.add_argument(
        "--token", action="append", default=None, help="bearer token clients must present (repeatable)"
    )
    auth.add_argument("--no-auth", action="store_true", help="accept unauthenticated clients (loopback only)")
    auth.add_argument("--twilio-auth-token", default=None, help="validate X-Twilio-Signature on /twilio")
    auth.add_argument(
        "--audiohook-api-key",
        action="append",
        default=None,
        metavar="KEY[:SECRET]",
        help="X-API-KEY accepted on /audiohook, and the integration's base64 client secret (signatures)",
    )
    rtc = parser.add_argument_group("WebRTC (/v1/webrtc, the dashboard's microphone test)")
    rtc.add_argument(
        "--ice-server",
        action="append",
        default=None,
        metavar="URL",
        help="STUN/TURN server for peers behind NAT: stun:HOST:PORT or turn:USER:PASS@HOST:PORT (repeatable)",
    )
    rtc.add_argument("--webrtc-max-peers", type=positive_int, default=None, help="WebRTC peers at once (32)")
    add_model_options(parser)
    sinks = parser.add_argument_group("alerts and sinks")
    sinks.add_argument("--webhook", action="append", default=None, metavar="URL", help="webhook receiver")
    sinks.add_argument("--webhook-secret", default=None, help="signing secret of the --webhook receivers")
    sinks.add_argument("--outbox", default=None, metavar="PATH", help="SQLite webhook outbox file")
    sinks.add_argument("--jsonl", default=None, metavar="PATH", help="also write every event as JSON lines")
    limits = parser.add_argument_group("limits")
    for name, (flag, kind, text) in LIMIT_FLAGS.items():
        limits.add_argument(flag, dest=name, type=kind, default=None, help=text)
    parser.add_argument("--plivo-content-type", default=None, help="Plivo contentType if start omits it")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.set_defaults(handler=run)


def build_config(args: argparse.Namespace) -> Any:
    """Merge the config file, flags and environment into a validated ServerConfig (UserError if invalid)."""
    from stream_guard.server.config import ConfigError, Limits, ServerConfig, from_mapping, load_file
    from stream_guard.sinks.webhooks import WebhookEndpoint

    try:
        config = from_mapping(load_file(args.config), args.config) if args.config else ServerConfig()
        updates: dict[str, Any] = {}
        for key in ("host", "port", "tls_cert", "tls_key", "public_url", "twilio_auth_token"):
            if getattr(args, key) is not None:
                updates[key] = getattr(args, key)
        if args.plivo_content_type:
            updates["plivo_content_type"] = args.plivo_content_type
        if args.model is not None:
            updates["model"] = args.model
        if args.hop is not None:
            updates["hop_s"] = args.hop
        if args.threads is not None:
            updates["threads"] = args.threads
        updates["provider"] = args.provider
        tokens = list(args.token or [])
        if os.environ.get("STREAM_GUARD_TOKEN"):
            tokens.append(os.environ["STREAM_GUARD_TOKEN"])
        if tokens:
            updates["tokens"] = tuple(tokens)
        if not updates.get("twilio_auth_token") and os.environ.get("TWILIO_AUTH_TOKEN"):
            updates["twilio_auth_token"] = os.environ["TWILIO_AUTH_TOKEN"]
        if args.audiohook_api_key:
            updates["audiohook_api_keys"] = tuple(args.audiohook_api_key)
        if args.allow_origin:
            updates["allowed_origins"] = tuple(args.allow_origin)
        if args.no_auth:
            updates["auth"] = False
        if args.webhook:
            secret = args.webhook_secret or os.environ.get("STREAM_GUARD_WEBHOOK_SECRET")
            if not secret:
                raise UserError("--webhook needs --webhook-secret (or STREAM_GUARD_WEBHOOK_SECRET)")
            updates["webhooks"] = config.webhooks + tuple(WebhookEndpoint(u, secret) for u in args.webhook)
        if args.ice_server:
            updates["ice_servers"] = tuple(args.ice_server)
        if args.webrtc_max_peers is not None:
            updates["webrtc_max_peers"] = args.webrtc_max_peers
        if args.outbox:
            updates["outbox_path"] = args.outbox
        if args.jsonl:
            updates["jsonl_path"] = args.jsonl
        limit_updates = {k: getattr(args, k) for k in LIMIT_FLAGS if getattr(args, k) is not None}
        if limit_updates:
            updates["limits"] = replace(config.limits or Limits(), **limit_updates)
        return replace(config, **updates).validate()
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("stream_guard.server.websockets").setLevel(logging.WARNING)
    config = build_config(args)
    backend = load_backend(ModelChoice(config.model, config.provider, config.threads))
    return asyncio.run(_serve(config, backend))


async def _serve(config: Any, backend: Any) -> int:
    from stream_guard.engine import Engine
    from stream_guard.server import StreamGuardServer
    from stream_guard.sinks.outbox import OutboxError

    engine = Engine(backend, config.engine_config(), owns_backend=True)
    server = StreamGuardServer(config, engine)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except OutboxError as exc:
        await engine.close()
        raise UserError(str(exc)) from None
    except OSError as exc:
        await engine.close()
        raise UserError(f"cannot listen on {config.host}:{config.port} ({exc.strerror or exc})") from None
    scheme = "wss" if config.tls_cert else "ws"
    print(f"stream-guard: serving on {scheme}://{config.host}:{server.port}", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        print(
            "stream-guard: shutting down (finishing streams, flushing webhooks)", file=sys.stderr, flush=True
        )
        await server.stop()
        await engine.close()
    return 0
