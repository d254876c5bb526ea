"""``stream-guard serve`` itself, started in the test's event loop on 127.0.0.1 at a free port.

One helper for the server, WebRTC and dashboard tests, so that every suite runs the server as deployed and
differs only in the settings it passes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from stream_guard.server import ServerConfig, StreamGuardServer


@contextlib.asynccontextmanager
async def loopback_server(
    bundle: Path, tmp_path: Path, token: str, **overrides: Any
) -> AsyncIterator[StreamGuardServer]:
    """A running server with ``bundle`` on the CPU, one bearer ``token`` and its outbox under ``tmp_path``."""
    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        model=str(bundle),
        provider="cpu",
        threads=1,
        tokens=(token,),
        outbox_path=str(tmp_path / "outbox.sqlite"),
        shutdown_grace_s=5.0,
        **overrides,
    )
    server = StreamGuardServer(config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
