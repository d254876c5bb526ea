"""Fixtures for command-line tests: a small real bundle with a calibration the test signals straddle."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/bundles.py, the shared bundle builder
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundles import build_bundle, bundle_metadata  # noqa: E402
from clihelpers import CALIBRATION, speechlike  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real bundle (log band energies at 16 kHz, 2 s windows); louder audio scores more synthetic."""
    return build_bundle(
        tmp_path_factory.mktemp("cli-bundle") / "tiny.onnx", metadata=bundle_metadata(calibration=CALIBRATION)
    )


@pytest.fixture
def clip16k(tmp_path: Path) -> Path:
    path = tmp_path / "clip16k.wav"
    sf.write(path, speechlike(3.0, 16000), 16000, subtype="PCM_16")
    return path
