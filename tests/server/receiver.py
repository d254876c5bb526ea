"""A real HTTP webhook receiver on loopback for tests: verifies signatures and records deliveries by id."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from stream_guard.sinks.webhooks import SignatureError, verify


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebhookReceiver:
    """Start/stop on a fixed port to simulate a receiver that is down for a while."""

    def __init__(self, secret: str, port: int | None = None, fail_first: int = 0) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.deliveries: list[tuple[str, dict]] = []  # (webhook-id, body) for every accepted request
        self.rejected: list[str] = []
        self.fail_first = fail_first
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    if receiver.fail_first > 0:
                        receiver.fail_first -= 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    try:
                        msg_id = verify(receiver.secret, dict(self.headers.items()), body)
                    except SignatureError as exc:
                        receiver.rejected.append(str(exc))
                        self.send_response(401)
                        self.end_headers()
                        return
                    receiver.deliveries.append((msg_id, json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ids(self) -> list[str]:
        with self._lock:
            return [i for i, _ in self.deliveries]
