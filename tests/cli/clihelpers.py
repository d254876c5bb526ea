"""Helpers for command-line tests: run ``stream-guard`` as a subprocess, make speech-like test signals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

#: The test bundle scores the mean log band energy: ``speechlike`` at gain 0.1 scores about -17.85 and at gain
#: 1.8 about -16.1, so a threshold of -17 makes the loud clip synthetic and the quiet one real.
CALIBRATION = {"threshold": -17.0, "center": -17.0, "scale": 0.2, "fitted_on": "test fixture"}
LOUD, QUIET = 1.8, 0.1


def run_cli(*args: str, timeout: float = 180, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m stream_guard.cli ARGS`` the way a user would, capturing both streams."""
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "stream_guard.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        input=input,
    )


def speechlike(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A deterministic, speech-ish test signal: harmonic bursts with pauses (float32, peak 0.5)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = (np.sin(2 * np.pi * 2.5 * t) > -0.3).astype(np.float64)
    x = x * envelope + 0.01 * rng.standard_normal(len(t))
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)
