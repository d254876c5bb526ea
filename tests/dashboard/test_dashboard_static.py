"""The dashboard's files as ``stream-guard serve`` ships them (no browser needed)."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request

import pytest
from e2e import TOKEN, serving

from stream_guard.dashboard import FILES, dashboard_file, dashboard_response, same_origin


def test_every_listed_file_is_shipped_and_referenced():
    for path, (name, content_type) in FILES.items():
        body, ctype = dashboard_file(path)
        assert body, name
        assert ctype == content_type
    index = dashboard_file("/")[0].decode()
    for asset in ("app.js", "style.css"):
        assert f'"{asset}"' in index
    app = dashboard_file("/app.js")[0].decode()
    # the page imports the same client module that plugins use
    assert re.search(r'from "\./stream-guard-client\.js"', app)


@pytest.mark.parametrize("path", ["/../pyproject.toml", "/dashboard/app.js", "/app.js/", "/secret", "/.env"])
def test_only_the_listed_paths_are_served(path):
    assert dashboard_file(path) is None
    assert dashboard_response(path) is None


def test_response_headers():
    page = dashboard_response("/?token=abc")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    client = dashboard_response("/stream-guard-client.js")
    assert client.headers["Access-Control-Allow-Origin"] == "*"  # plugins on other origins import it
    assert int(client.headers["Content-Length"]) == len(client.body)


@pytest.mark.parametrize(
    ("origin", "host", "expected"),
    [
        ("http://127.0.0.1:8765", "127.0.0.1:8765", True),
        ("https://Guard.example.com", "guard.example.com", True),
        ("http://127.0.0.1:8765", "127.0.0.1:9999", False),
        ("http://evil.example", "guard.example.com", False),
        ("null", "guard.example.com", False),
        (None, "guard.example.com", False),
        ("http://guard.example.com", None, False),
    ],
)
def test_same_origin(origin, host, expected):
    assert same_origin(origin, host, any_host=True) is expected


@pytest.mark.parametrize(
    ("origin", "host", "expected"),
    [
        ("http://127.0.0.1:8765", "127.0.0.1:8765", True),
        ("http://localhost:8765", "localhost:8765", True),
        ("http://[::1]:8765", "[::1]:8765", True),
        # a host name rebound to 127.0.0.1 by an attacker's DNS: not the server's own page
        ("http://rebind.example:8765", "rebind.example:8765", False),
        ("https://guard.example.com", "guard.example.com", False),
    ],
)
def test_same_origin_without_auth_trusts_loopback_names_only(origin, host, expected):
    assert same_origin(origin, host) is expected


def test_served_by_stream_guard_serve_at_root(bundle_path, tmp_path):
    """``/`` and the scripts come from the server itself, without a token; other paths keep their routes."""

    async def main():
        async with serving(bundle_path, tmp_path) as server:
            base = f"http://127.0.0.1:{server.port}"
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

            def get(path):
                try:
                    with opener.open(base + path) as r:
                        return r.status, r.headers.get("Content-Type"), r.read()
                except urllib.error.HTTPError as err:
                    return err.code, err.headers.get("Content-Type"), err.read()

            return {
                p: await asyncio.to_thread(get, p)
                for p in ("/", "/app.js", "/stream-guard-client.js", "/healthz", "/nope")
            }

    got = asyncio.run(main())
    assert got["/"][0] == 200 and b"Test with my microphone" in got["/"][2]
    assert got["/app.js"][0] == 200 and got["/app.js"][1].startswith("text/javascript")
    assert (
        got["/stream-guard-client.js"][0] == 200
        and b"class StreamGuardClient" in got["/stream-guard-client.js"][2]
    )
    assert got["/healthz"][:1] == (200,)
    assert got["/nope"][0] == 404
    assert TOKEN.encode() not in got["/"][2]  # the page never embeds the server's token
