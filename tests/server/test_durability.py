"""A ``kill -9`` of ``stream-guard serve`` between an alert and its delivery loses nothing after a restart."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from receiver import WebhookReceiver
from serverkit import mulaw, noise
from websockets.asyncio.client import connect

from stream_guard.protocols.simulators import twilio_call

SECRET = "whsec_a2lsbC1uaW5lLXRlc3Qtc2VjcmV0LTAxMjM0NTY3"


def start_server(bundle: Path, outbox: Path, hook_url: str) -> tuple[subprocess.Popen, int]:
    cmd = [
        sys.executable, "-m", "stream_guard.cli", "serve", "--port", "0", "--no-auth",
        "--model", str(bundle), "--provider", "cpu", "--threads", "1",
        "--webhook", hook_url, "--webhook-secret", SECRET, "--outbox", str(outbox),
        "--max-messages-per-s", "100000", "--max-bytes-per-s", "100000000",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"serving on ws://127\.0\.0\.1:(\d+)", line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise AssertionError("server did not start")


def outbox_rows(path: Path) -> dict[str, str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT id, state FROM outbox").fetchall())


def wait_until(predicate, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


@pytest.mark.slow
def test_kill_9_between_alert_and_delivery_loses_nothing(phone_bundle, tmp_path):
    outbox = tmp_path / "outbox.sqlite"
    receiver = WebhookReceiver(SECRET)  # down: nothing can be delivered before the crash
    proc, port = start_server(phone_bundle, outbox, receiver.url)
    try:

        async def call() -> None:
            async with connect(f"ws://127.0.0.1:{port}/twilio", proxy=None) as ws:
                for msg in twilio_call(mulaw(noise(5.0, 0.3, seed=11))):
                    await ws.send(msg)
                await asyncio.sleep(0.2)

        asyncio.run(call())
        # alert.raised and stream.summary are committed to the outbox, not yet delivered
        wait_until(lambda: outbox.exists() and len(outbox_rows(outbox)) >= 2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    pending = outbox_rows(outbox)
    assert set(pending.values()) == {"pending"}

    receiver.start()
    proc, _ = start_server(phone_bundle, outbox, receiver.url)
    try:
        wait_until(lambda: len(receiver.ids()) >= len(pending))
        wait_until(lambda: set(outbox_rows(outbox).values()) == {"delivered"})
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        proc.stderr.close()
        receiver.stop()
    assert rc == 0
    ids = receiver.ids()
    assert set(ids) == set(pending) and max(Counter(ids).values()) == 1
    kinds = sorted(body["type"] for _, body in receiver.deliveries)
    assert "alert.raised" in kinds and "stream.summary" in kinds
