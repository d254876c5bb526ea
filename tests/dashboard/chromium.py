"""Drive Debian's headless Chromium over the DevTools protocol (a websocket; no extra packages).

Used by the end-to-end dashboard tests and ``benchmarks/webrtc_latency.py``. Chromium plays a WAV file as its
microphone (``--use-file-for-fake-audio-capture``), grants the permission itself, and may connect WebRTC over
loopback; mDNS host-name candidates are turned off so that its loopback candidate is a plain address.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium binary (``$CHROMIUM`` first), or None when none is installed."""
    env = os.environ.get("CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_flags(user_data_dir: str, audio_file: str | None) -> list[str]:
    """The flags of a quiet, loopback-only headless Chromium with a fake microphone."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        f"--user-data-dir={user_data_dir}",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--window-size=1400,900",
        "--remote-debugging-port=0",
        "--remote-allow-origins=*",
    ]
    if audio_file is not None:
        flags.append(f"--use-file-for-fake-audio-capture={audio_file}%noloop")
    return flags


class CDPError(RuntimeError):
    """A DevTools command failed or the page threw."""


class Chromium:
    """One headless Chromium process with one page, driven over CDP.

    ``async with Chromium(audio_file=...) as browser: await browser.goto(url); await browser.evaluate(js)``.
    Console messages and page errors are kept in ``console`` for failure messages.
    """

    def __init__(self, *, audio_file: str | Path | None = None, binary: str | None = None) -> None:
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise RuntimeError("Chromium is not installed (apt-get install chromium)")
        self.audio_file = str(audio_file) if audio_file is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.ws: Any = None
        self.session: str | None = None
        self.console: list[str] = []
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="sg-chromium-")

    async def __aenter__(self) -> Chromium:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        from websockets.asyncio.client import connect

        profile = self._tmp.name
        assert self.binary is not None
        self.proc = subprocess.Popen(
            [self.binary, *chromium_flags(profile, self.audio_file), "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(profile, "stderr.log"), "wb"),  # noqa: SIM115 - lives with the process
        )
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not start: {self.stderr_tail()}")
            await asyncio.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = await connect(f"ws://127.0.0.1:{port}{path}", proxy=None, max_size=64 * 2**20)
        self._reader = asyncio.ensure_future(self._read())
        target = await self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False
        )
        self.session = attached["sessionId"]
        await self.send("Runtime.enable")
        await self.send("Page.enable")

    def stderr_tail(self) -> str:
        log = Path(self._tmp.name) / "stderr.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg:
                fut = self._pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    if "error" in msg:
                        err = msg["error"]
                        fut.set_exception(CDPError(f"{err.get('message')}: {err.get('data', '')}"))
                    else:
                        fut.set_result(msg.get("result", {}))
            elif msg.get("method") == "Runtime.consoleAPICalled":
                args = msg["params"].get("args", [])
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
                self.console.append(f"console.{msg['params'].get('type')}: {text}")
            elif msg.get("method") == "Runtime.exceptionThrown":
                details = msg["params"]["exceptionDetails"]
                desc = details.get("exception", {}).get("description") or details.get("text")
                self.console.append(f"exception: {desc}")

    async def send(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True) -> Any:
        """Send one CDP command (to the page unless ``session=False``) and return its result."""
        msg_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        await self.ws.send(json.dumps(msg))
        return await asyncio.wait_for(fut, timeout=60)

    async def goto(self, url: str) -> None:
        """Navigate and wait for the load event."""
        await self.send("Page.navigate", {"url": url})
        for _ in range(200):
            if await self.evaluate("document.readyState") == "complete":
                return
            await asyncio.sleep(0.05)
        raise CDPError(f"{url} did not finish loading")

    async def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page (promises awaited) and return its JSON value."""
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CDPError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float, interval_s: float = 0.1) -> Any:
        """Poll ``expression`` until it is truthy; return its value, or raise with the page's console."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise CDPError(
                    f"timed out after {timeout_s:g} s waiting for {expression!r}; console:\n"
                    + "\n".join(self.console[-30:])
                )
            await asyncio.sleep(interval_s)

    async def screenshot(self, path: str | Path) -> Path:
        """Save a PNG of the page."""
        result = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        out = Path(path)
        out.write_bytes(base64.b64decode(result["data"]))
        return out

    async def close(self) -> None:
        """Stop Chromium and remove its profile (also after a failed start)."""
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.send("Browser.close", session=False)
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        for fut in self._pending.values():
            fut.cancel()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._tmp.cleanup()
