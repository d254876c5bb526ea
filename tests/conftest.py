"""Shared fixtures: small valid bundles built at run time (tests/bundles.py) and test signals."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/bundles.py, importable from every folder

from bundles import build_bundle  # noqa: E402


@pytest.fixture(scope="session")
def bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A time x frequency test bundle (16 kHz, 2 s windows, 0.5 s hop, 0.5 s minimum, 40 ms map columns)."""
    return build_bundle(tmp_path_factory.mktemp("bundle") / "band-energy.onnx")


@pytest.fixture(scope="session")
def time_bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model with a time-track map ``[B, T]``."""
    return build_bundle(tmp_path_factory.mktemp("bundle") / "band-energy-time.onnx", kind="time")


@pytest.fixture(scope="session")
def backend(bundle_path: Path):
    from stream_guard.backends import OnnxRuntimeBackend

    b = OnnxRuntimeBackend(bundle_path, provider="cpu", threads=1)
    yield b
    b.close()


@pytest.fixture(scope="session")
def meta(backend):
    return backend.metadata
