"""A private PulseAudio daemon with a virtual microphone, for testing real audio capture.

Layout: a null sink ``sg_sink`` (16 kHz mono, so nothing is resampled on the way), a virtual source ``sg_mic``
on the sink's monitor (the default source: what `stream-guard listen` records), and a silent keep-alive
(``pacat`` playing zeros into the sink) so the sink never idles. After start the sink is suspended and resumed
once: without that, the monitor delivers silence for about two seconds.

The daemon runs in its own ``XDG_RUNTIME_DIR``; :attr:`PulseDaemon.env` is the environment a client process
needs to reach it. sounddevice enumerates devices when it is imported, so the client must be started after the
daemon (a subprocess, as the tests do). Root may run it: ``-n`` (no default config) with
``--exit-idle-time=-1`` and ``--daemonize=no`` is all PulseAudio needs for a per-test instance.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

SINK = "sg_sink"
SOURCE = "sg_mic"
RATE = 16000


class PulseUnavailable(RuntimeError):
    """PulseAudio (or pactl/pacat) is not installed or did not start."""


class PulseDaemon:
    def __init__(self, runtime_dir: Path) -> None:
        self.runtime_dir = runtime_dir
        self.env = dict(
            os.environ,
            XDG_RUNTIME_DIR=str(runtime_dir),
            PULSE_SERVER=f"unix:{runtime_dir}/pulse/native",
            PULSE_RUNTIME_PATH=str(runtime_dir / "pulse"),
        )
        self.env.pop("PULSE_SINK", None)
        self.env.pop("PULSE_SOURCE", None)
        self._daemon: subprocess.Popen[bytes] | None = None
        self._keepalive: subprocess.Popen[bytes] | None = None
        self.log = runtime_dir / "pulseaudio.log"

    def pactl(self, *args: str) -> str:
        out = subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=20)
        if out.returncode != 0:
            raise PulseUnavailable(f"pactl {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def start(self) -> PulseDaemon:
        for tool in ("pulseaudio", "pactl", "pacat", "paplay"):
            if shutil.which(tool) is None:
                raise PulseUnavailable(f"{tool} is not installed (scripts/install-system-deps.sh)")
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.runtime_dir, 0o700)
        with open(self.log, "wb") as log:
            self._daemon = subprocess.Popen(
                [
                    "pulseaudio",
                    "-n",
                    "--daemonize=no",
                    "--exit-idle-time=-1",
                    "--disallow-exit",
                    "--use-pid-file=no",
                    "--log-target=stderr",
                    "--load=module-native-protocol-unix",
                    f"--load=module-null-sink sink_name={SINK} rate={RATE} channels=1 format=s16le",
                ],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 20
        while True:
            if self._daemon.poll() is not None:
                raise PulseUnavailable(f"pulseaudio exited: {self.log.read_text()[-2000:]}")
            try:
                self.pactl("info")
                break
            except PulseUnavailable:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.2)
        self.pactl("load-module", "module-virtual-source", f"source_name={SOURCE}", f"master={SINK}.monitor")
        self.pactl("set-default-sink", SINK)
        self.pactl("set-default-source", SOURCE)
        self._keepalive = subprocess.Popen(
            [
                "pacat",
                "--playback",
                f"--device={SINK}",
                "--format=s16le",
                f"--rate={RATE}",
                "--channels=1",
                "/dev/zero",
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        self.pactl("suspend-sink", SINK, "1")
        self.pactl("suspend-sink", SINK, "0")
        return self

    def play(self, wav: Path) -> subprocess.Popen[bytes]:
        """Start playing a file into the sink (returns the running paplay)."""
        return subprocess.Popen(["paplay", f"--device={SINK}", str(wav)], env=self.env)

    def stop(self) -> None:
        for proc in (self._keepalive, self._daemon):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._keepalive = self._daemon = None
