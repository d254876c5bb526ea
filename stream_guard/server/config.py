"""Configuration of ``stream-guard serve``: one dataclass, filled from flags or a TOML/JSON file.

Secure by default: a bearer token is required on every ingest and event endpoint unless ``auth`` is disabled,
which is only allowed when the server listens on a loopback address (a development setup). Limits bound every
resource a remote peer can make the server spend: connections, streams, message size, message and byte rates,
idle time and stream duration.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from stream_guard.sinks.webhooks import WebhookEndpoint


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the file or option."""


@dataclass(frozen=True)
class Limits:
    """Per-server and per-connection limits (see docs/serve.md for the close code each one produces)."""

    max_connections: int = 512
    max_streams: int = 256
    max_message_bytes: int = 1 << 20
    max_messages_per_s: float = 200.0
    max_bytes_per_s: float = 512_000.0
    idle_timeout_s: float = 30.0
    max_stream_s: float = 4 * 3600.0
    handshake_timeout_s: float = 10.0


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``serve`` needs; :meth:`validate` is called before the server binds."""

    host: str = "127.0.0.1"
    port: int = 8765
    tls_cert: str | None = None
    tls_key: str | None = None
    model: str | None = None
    provider: str = "auto"
    threads: int | None = None
    hop_s: float | None = None
    auth: bool = True
    tokens: tuple[str, ...] = ()
    twilio_auth_token: str | None = None
    audiohook_api_keys: tuple[str, ...] = ()
    public_url: str | None = None
    allowed_origins: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    webhooks: tuple[WebhookEndpoint, ...] = ()
    outbox_path: str = "~/.cache/stream-guard/outbox.sqlite"
    jsonl_path: str | None = None
    plivo_content_type: str = "audio/x-l16;rate=8000"
    shutdown_grace_s: float = 10.0
    max_batch: int = 32
    max_wait_ms: float = 10.0
    # real-time shedding (EngineConfig): windows queued per stream, and the age beyond which one is dropped
    stream_queue_limit: int = 8
    max_delay_ms: float | None = 2000.0

    def engine_config(self) -> Any:
        """The engine's scheduling limits from this configuration."""
        from stream_guard.engine import EngineConfig

        return EngineConfig(
            max_batch=self.max_batch,
            max_wait_ms=self.max_wait_ms,
            stream_queue_limit=self.stream_queue_limit,
            max_delay_ms=self.max_delay_ms,
        )

    # WebRTC (/v1/webrtc): STUN/TURN servers as stun:HOST[:PORT] or turn:USER:PASS@HOST[:PORT], peer limit
    ice_servers: tuple[str, ...] = ()
    webrtc_max_peers: int = 32

    def validate(self) -> ServerConfig:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is outside 0..65535")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("TLS needs both a certificate (--tls-cert) and a key (--tls-key)")
        for path in (self.tls_cert, self.tls_key):
            if path and not Path(path).expanduser().is_file():
                raise ConfigError(f"{path}: no such file")
        if self.auth and not (self.tokens or self.twilio_auth_token or self.audiohook_api_keys):
            raise ConfigError(
                "authentication is on but no credential is configured: give --token (or STREAM_GUARD_TOKEN), "
                "or disable auth with --no-auth on a loopback address"
            )
        if not self.auth and not is_loopback(self.host):
            raise ConfigError(f"--no-auth is only allowed on a loopback address, not {self.host!r}")
        lim = self.limits
        for name in ("max_connections", "max_streams", "max_message_bytes"):
            if getattr(lim, name) < 1:
                raise ConfigError(f"limit {name} must be at least 1")
        for name in ("max_messages_per_s", "max_bytes_per_s", "idle_timeout_s", "max_stream_s"):
            if not getattr(lim, name) > 0:
                raise ConfigError(f"limit {name} must be positive")
        if self.webrtc_max_peers < 1:
            raise ConfigError("webrtc_max_peers must be at least 1")
        for spec in self.ice_servers:
            from stream_guard.sources.webrtc import IceServer

            try:
                IceServer.parse(spec)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        for hook in self.webhooks:
            if not hook.url.startswith(("http://", "https://")):
                raise ConfigError(f"webhook URL {hook.url!r} must start with http:// or https://")
            if not hook.secret:
                raise ConfigError(f"webhook {hook.url}: a signing secret is required")
        return self


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON config file into a dict of ServerConfig fields."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.strerror})") from None
    try:
        if p.suffix == ".toml":
            import tomllib  # Python >= 3.11

            return tomllib.loads(text)
        return json.loads(text)
    except ImportError:
        raise ConfigError(f"{p}: TOML config needs Python 3.11+; use a .json file") from None
    except ValueError as exc:
        raise ConfigError(f"{p}: not valid {'TOML' if p.suffix == '.toml' else 'JSON'} ({exc})") from None


def from_mapping(raw: dict[str, Any], source: str = "config") -> ServerConfig:
    """Build a ServerConfig from a dict (config file), rejecting unknown keys by name."""
    known = {f.name for f in fields(ServerConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown option(s) {', '.join(unknown)}")
    values = dict(raw)
    if "limits" in values:
        lim = values["limits"]
        lim_known = {f.name for f in fields(Limits)}
        if not isinstance(lim, dict) or set(lim) - lim_known:
            raise ConfigError(f"{source}: [limits] accepts {', '.join(sorted(lim_known))}")
        values["limits"] = Limits(**lim)
    if "webhooks" in values:
        hooks = values["webhooks"]
        if not isinstance(hooks, list):
            raise ConfigError(f"{source}: webhooks must be a list of {{url, secret, types}} tables")
        try:
            values["webhooks"] = tuple(
                WebhookEndpoint(str(h["url"]), str(h["secret"]), frozenset(h.get("types", ()))) for h in hooks
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{source}: each webhook needs url and secret ({exc})") from None
    for key in ("tokens", "audiohook_api_keys", "allowed_origins", "ice_servers"):
        if key in values:
            values[key] = tuple(values[key])
    try:
        return ServerConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
