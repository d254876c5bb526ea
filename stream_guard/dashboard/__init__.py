"""The live dashboard: static files shipped in the package and served by ``stream-guard serve`` at ``/``.

No build step and no second HTTP stack: the server's websockets ``process_request`` hook asks
:func:`dashboard_response` for every plain HTTP GET, and gets either a complete response for one of the files
below or ``None`` (not a dashboard path: the server carries on with its own routes). The page talks to the
server over the same websockets as everyone else (``/v1/events`` for all streams, ``/v1/webrtc`` for the
microphone test), with the same token.
"""

from __future__ import annotations

import ipaddress
from functools import cache
from importlib import resources

# URL path -> (file in this package, content type). Only these are served: no directory listing, no traversal.
FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/stream-guard-client.js": ("stream-guard-client.js", "text/javascript; charset=utf-8"),
}

# The page loads only its own scripts and styles and talks only to this server (ws/wss on the same host).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; media-src 'self' blob:; frame-ancestors 'none'"
)


@cache
def read_file(name: str) -> bytes:
    """The bytes of one shipped dashboard file (read once: they are part of the installed package)."""
    return resources.files(__name__).joinpath(name).read_bytes()


def dashboard_file(path: str) -> tuple[bytes, str] | None:
    """``(body, content type)`` for a request path (query string ignored), or None if it is not a dashboard
    file.
    """
    route = path.split("?", 1)[0].split("#", 1)[0]
    entry = FILES.get(route)
    if entry is None:
        return None
    name, content_type = entry
    return read_file(name), content_type


def dashboard_response(path: str) -> object | None:
    """A websockets ``Response`` serving a dashboard file, for a server's ``process_request`` hook (else
    None).

    The plugin client module is also served with ``Access-Control-Allow-Origin: *`` so that a conferencing
    plugin running on another origin can import it.
    """
    found = dashboard_file(path)
    if found is None:
        return None
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    body, content_type = found
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ]
    )
    if path.startswith("/stream-guard-client.js"):
        headers["Access-Control-Allow-Origin"] = "*"
    else:
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return Response(200, "OK", headers, body)


def same_origin(origin: str | None, host: str | None, *, any_host: bool = False) -> bool:
    """True when a browser's ``Origin`` names the host it connects to: the dashboard served by this server.

    Browsers send ``Origin`` on websocket handshakes; the page at ``http://host:port/`` opening
    ``ws://host:port/v1/events`` is the server's own page and is accepted without listing its origin. Only
    for loopback host names unless ``any_host``: a server without authentication (allowed on loopback only)
    must not trust a page whose host name was made to resolve to 127.0.0.1 (DNS rebinding); with
    authentication on, the page still needs the token, so ``any_host=True`` is safe there.
    """
    if not origin or not host:
        return False
    from urllib.parse import urlsplit

    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.strip().lower():
        return False
    if any_host:
        return True
    name = (parts.hostname or "").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
