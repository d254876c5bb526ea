"""Fixtures for server tests: a telephone-band test bundle (helpers live in serverkit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundles import build_bundle, bundle_metadata


@pytest.fixture(scope="session")
def phone_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The band-energy test bundle calibrated for 8 kHz audio: quiet noise 'real', loud noise 'synthetic'."""
    meta = bundle_metadata(
        calibration={"threshold": -14.5, "center": -14.5, "scale": 0.3, "fitted_on": "tests"}
    )
    return build_bundle(tmp_path_factory.mktemp("bundle") / "phone.onnx", metadata=meta)
