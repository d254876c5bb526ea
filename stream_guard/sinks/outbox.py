"""Durable outbox for webhook deliveries: an SQLite table that survives a crash of the server.

An alert is worth nothing if it is lost because the receiver was down or stream-guard restarted. Every webhook
message is first committed here (``synchronous=FULL``: the row is on disk before :meth:`Outbox.enqueue`
returns), then delivered and marked; after a ``kill -9`` the next start finds the undelivered rows and sends
them. Delivery is therefore *at least once*; receivers de-duplicate by the message id, which is also the
``webhook-id`` / ``Idempotency-Key`` header. Enqueueing the same id twice is a no-op, so a retried enqueue
cannot duplicate a message either.

This class is synchronous and does no networking (the async dispatcher in :mod:`stream_guard.sinks.webhooks`
calls it from a worker thread); it is safe to share between threads.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered | dead
    finished REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_attempt);
"""


class OutboxError(RuntimeError):
    """The outbox database cannot be opened or written; the message names the file."""


@dataclass(frozen=True)
class Pending:
    """One undelivered message."""

    id: str
    url: str
    body: bytes
    created: float
    attempts: int


class Outbox:
    """SQLite-backed queue of webhook messages; see the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser() if str(path) != ":memory:" else Path(":memory:")
        try:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"{self.path}: cannot open the webhook outbox ({exc})") from None
        self._lock = threading.Lock()

    def enqueue(self, msg_id: str, url: str, body: bytes, now: float | None = None) -> bool:
        """Store a message durably; False if a message with this id already exists (idempotent)."""
        now = time.time() if now is None else now
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO outbox (id, url, body, created, next_attempt) VALUES (?, ?, ?, ?, ?)",
                (msg_id, url, body, now, now),
            )
            return cur.rowcount == 1

    def due(self, now: float | None = None, limit: int = 32) -> list[Pending]:
        """Pending messages whose next attempt is due, oldest first."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT id, url, body, created, attempts FROM outbox"
                " WHERE state = 'pending' AND next_attempt <= ? ORDER BY next_attempt, created LIMIT ?",
                (now, limit),
            ).fetchall()
        return [Pending(r[0], r[1], bytes(r[2]), r[3], r[4]) for r in rows]

    def next_due_at(self) -> float | None:
        """When the earliest pending message is due (None when nothing is pending)."""
        with self._lock:
            row = self._db.execute("SELECT MIN(next_attempt) FROM outbox WHERE state = 'pending'").fetchone()
        return row[0]

    def delivered(self, msg_id: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET state = 'delivered', finished = ?, attempts = attempts + 1 WHERE id = ?",
                (now, msg_id),
            )

    def failed(self, msg_id: str, error: str, retry_at: float | None) -> None:
        """Record a failed attempt; ``retry_at`` None means give up (the message becomes ``dead``)."""
        with self._lock:
            if retry_at is None:
                self._db.execute(
                    "UPDATE outbox SET state = 'dead', finished = ?, attempts = attempts + 1, last_error = ?"
                    " WHERE id = ?",
                    (time.time(), error[:500], msg_id),
                )
            else:
                self._db.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, last_error = ?"
                    " WHERE id = ?",
                    (retry_at, error[:500], msg_id),
                )

    def counts(self) -> dict[str, int]:
        """Number of messages per state (pending, delivered, dead)."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        out = {"pending": 0, "delivered": 0, "dead": 0}
        out.update({state: n for state, n in rows})
        return out

    def purge(self, older_than_s: float, now: float | None = None) -> int:
        """Delete delivered and dead messages finished more than ``older_than_s`` ago; returns how many."""
        now = time.time() if now is None else now
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM outbox WHERE state != 'pending' AND finished < ?", (now - older_than_s,)
            )
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
