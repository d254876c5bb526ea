"""Shared fixtures for the AntiDeepfake tests: tiny random models of every family, synthetic corpora."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # training/ and export/ are source folders, not installed packages
    sys.path.insert(0, str(ROOT))

pytest.importorskip("transformers")


def speechlike(seconds: float, rng: np.random.Generator, buzzy: bool = False) -> np.ndarray:
    """A voiced, amplitude-modulated harmonic signal with noise; ``buzzy`` adds a square-wave component."""
    n = int(seconds * 16_000)
    t = np.arange(n) / 16_000
    f0 = rng.uniform(90, 220) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / 16_000
    x = sum(np.sin(k * phase) / k for k in range(1, 10)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    x = 0.1 * x + 0.005 * rng.standard_normal(n)
    if buzzy:
        x = x + 0.05 * np.sign(np.sin(phase))
    return x.astype(np.float32)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small corpus manifest in the project format (train/dev splits, two spoof systems)."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("adf_corpus")
    rng = np.random.default_rng(1)
    rows = []
    for split, n in (("train", 8), ("dev", 4)):
        for i in range(n):
            for label, system in (("bonafide", "bonafide"), ("spoof", "buzz-a" if i % 2 else "buzz-b")):
                seconds = float(rng.uniform(1.0, 2.5))
                x = speechlike(seconds, rng, buzzy=label == "spoof")
                name = f"{split}_{label}_{i}.wav"
                sf.write(root / name, x, 16_000)
                rows.append([name, label, system, f"spk{i % 3}", "xx", split, f"{seconds:.3f}", "test"])
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "system", "speaker", "language", "split", "duration", "licence"])
        w.writerows(rows)
    return root / "manifest.csv"
