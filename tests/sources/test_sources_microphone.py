"""The microphone path for real: a PulseAudio virtual source fed with a known file, recorded by
``stream-guard listen``, must score like ``stream-guard scan`` of the same file.

Also the two ways a machine lacks audio input: no device at all, and no PortAudio library.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundles import build_bundle, bundle_metadata  # noqa: E402
from pulse import PulseDaemon, PulseUnavailable  # noqa: E402

# The test bundle scores mean log band energy; this calibration puts the test signal on the synthetic side.
CALIBRATION = {"threshold": -17.0, "center": -17.0, "scale": 0.2, "fitted_on": "test fixture"}
# Scores of the same steady signal through the virtual microphone (16-bit, a different window alignment) and
# from the file agree to well within this; a level change of 2x moves the score by about 0.5.
SCORE_TOLERANCE = 0.05


def _cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_guard.cli", *args],
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        cwd=REPO,
        timeout=timeout,
    )


def _steady_signal(seconds: float, sr: int) -> np.ndarray:
    """A harmonic complex with a little noise and no envelope: window scores do not depend on alignment."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * 130 * k * t + k) / k for k in range(1, 10)) + 0.05 * rng.standard_normal(
        len(t)
    )
    return (0.6 * x / np.max(np.abs(x))).astype(np.float32)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(
        tmp_path_factory.mktemp("mic-bundle") / "mic.onnx", metadata=bundle_metadata(calibration=CALIBRATION)
    )


@pytest.fixture
def pulse(tmp_path: Path):
    daemon = PulseDaemon(tmp_path / "pulse-runtime")
    try:
        daemon.start()
    except PulseUnavailable as exc:
        if os.environ.get("CI"):
            raise  # CI installs PulseAudio: a failure to start there is a real failure
        pytest.skip(str(exc))
    yield daemon
    daemon.stop()


def _wait_for_first_score(events_path: Path, timeout: float = 60.0) -> None:
    """Block until a running ``listen --jsonl`` has written its first score (it is recording by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if events_path.exists() and '"type":"score"' in events_path.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"no score event in {events_path} after {timeout:.0f} s")


def _full_window_scores(events: list[dict]) -> list[float]:
    return [
        e["score"] for e in events if e["type"] == "score" and not e["low_confidence"] and not e["reasons"]
    ]


@pytest.mark.slow
def test_listen_on_a_virtual_microphone_scores_like_scan(
    pulse: PulseDaemon, bundle: Path, tmp_path: Path
) -> None:
    sr = 16000
    signal = _steady_signal(6.0, sr)
    wav = tmp_path / "known.wav"
    sf.write(wav, signal, sr, subtype="PCM_16")

    scan = _cli("scan", str(wav), "--model", str(bundle), "--jsonl", "-", "--quiet")
    assert scan.returncode == 0, scan.stderr
    scan_events = [json.loads(line) for line in scan.stdout.splitlines()]
    scan_scores = _full_window_scores(scan_events)
    assert len(scan_scores) >= 5

    devices = _cli("listen", "--list-devices", env=pulse.env)
    assert devices.returncode == 0, devices.stderr
    assert "default" in devices.stdout

    events_path = tmp_path / "mic.jsonl"
    listen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream_guard.cli",
            "listen",
            "--duration",
            "10",
            "--jsonl",
            str(events_path),
            "--model",
            str(bundle),
            "--sample-rate",
            str(sr),
        ],
        env=pulse.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_first_score(events_path)  # recording for sure; the lead-in is silence ("no speech")
    player = pulse.play(wav)
    assert player.wait(timeout=60) == 0
    out, err = listen.communicate(timeout=120)
    assert listen.returncode == 0, err
    assert "Traceback" not in err

    mic_events = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert mic_events[-1]["type"] == "summary"
    assert mic_events[-1]["duration_s"] == pytest.approx(10.0, abs=0.3)
    mic_scores = _full_window_scores(mic_events)
    # windows that lay wholly inside the playback score like the file; partial ones score lower
    plateau = sorted(mic_scores)[-len(scan_scores) + 1 :]
    assert len(plateau) >= 4, mic_events
    difference = abs(float(np.median(plateau)) - float(np.median(scan_scores)))
    print(f"median full-window score: file {np.median(scan_scores):.4f}, microphone {np.median(plateau):.4f}")
    assert difference <= SCORE_TOLERANCE
    assert mic_events[-1]["verdict"] == scan_events[-1]["verdict"] == "synthetic"
    assert "verdict" in out  # the summary table


@pytest.mark.slow
def test_listen_ends_cleanly_on_ctrl_c_with_a_summary(
    pulse: PulseDaemon, bundle: Path, tmp_path: Path
) -> None:
    events_path = tmp_path / "mic.jsonl"
    listen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream_guard.cli",
            "listen",
            "--jsonl",
            str(events_path),
            "--model",
            str(bundle),
        ],
        env=pulse.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_first_score(events_path)
    listen.send_signal(signal.SIGINT)
    out, err = listen.communicate(timeout=60)
    assert listen.returncode == 0, err
    assert "Traceback" not in err
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert events[-1]["type"] == "summary" and events[-1]["windows"] >= 1
    assert "stream-guard listen" in out and "mic:" in out


def test_listen_without_an_input_device_says_so(bundle: Path, tmp_path: Path) -> None:
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path), PULSE_SERVER=f"unix:{tmp_path}/no-such-socket")
    listing = _cli("listen", "--list-devices", env=env)
    if listing.returncode == 0:
        pytest.skip("this machine has a real audio input device")
    assert "no audio input devices found" in listing.stdout + listing.stderr
    result = _cli("listen", "--duration", "1", "--model", str(bundle), env=env)
    assert result.returncode == 2
    assert "no audio input device found" in result.stderr
    assert "Traceback" not in result.stderr


def test_listen_without_portaudio_says_how_to_install_it(bundle: Path, tmp_path: Path) -> None:
    """sounddevice raises OSError at import when PortAudio is missing; a stand-in module does exactly that."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "sounddevice.py").write_text('raise OSError("PortAudio library not found")\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]))
    result = _cli("listen", "--duration", "1", "--model", str(bundle), env=env)
    assert result.returncode == 2
    assert "PortAudio library is not installed" in result.stderr and "libportaudio2" in result.stderr
    assert "Traceback" not in result.stderr
