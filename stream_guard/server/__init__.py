"""``stream-guard serve``: the websocket server (asyncio adapter around the sans-I/O protocol parsers)."""

from stream_guard.server.app import ROUTES, StreamGuardServer
from stream_guard.server.config import ConfigError, Limits, ServerConfig

__all__ = ["ROUTES", "ConfigError", "Limits", "ServerConfig", "StreamGuardServer"]
