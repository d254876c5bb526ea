"""Fixtures for the one-class detector tests: generated speech-like audio, a tiny generated corpus."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # training/ and export/ are source folders, not installed packages
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    """3 s of a speech-like signal at 16 kHz (generated, deterministic)."""
    from training.oneclass.tiny import speech_like

    return speech_like(np.random.default_rng(1), 3.0)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.oneclass.tiny import build_tiny_corpus

    return build_tiny_corpus(tmp_path_factory.mktemp("tiny-corpus"), clips_per_split=3)
