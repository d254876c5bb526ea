"""The runtime shortcut check counts verdict flips per channel change, with any bundle the runtime loads."""

from __future__ import annotations

import csv
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from bundles import build_bundle, bundle_metadata

from training.corpus.manifest import ManifestRow
from training.evaluation.shortcuts import CHANGES, run


def write_manifest(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        path = folder / f"real{i}.flac"
        sf.write(path, (rng.standard_normal(3 * 16000) * 0.05).astype(np.float32), 16000)
        rows.append(
            ManifestRow(
                path=str(path), label="bonafide", system="bonafide", family="none", source="test",
                speaker=f"s{i}", language="en", band="wideband", channel="wideband", split="eval",
                duration=3.0, licence="generated",
            )
        )  # fmt: skip
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[x.name for x in fields(ManifestRow)])
        writer.writeheader()
        writer.writerows(r.__dict__ for r in rows)
    return manifest


@pytest.mark.parametrize("threshold, flagged", [(-1e6, 3), (1e6, 0)])
def test_counts_follow_the_threshold(tmp_path: Path, threshold: float, flagged: int) -> None:
    calibration = {"threshold": threshold, "center": -13.5, "scale": 0.5, "fitted_on": "t"}
    meta = bundle_metadata(calibration=calibration)
    model = build_bundle(tmp_path / "m.onnx", metadata=meta)
    result = run(str(model), write_manifest(tmp_path, 3), "eval", "wideband", n_clips=3, seed=0)
    assert result["clips"] == 3 and set(result["changes"]) == set(CHANGES)
    for counts in result["changes"].values():
        # every clip is judged (none is all silence): each version is flagged exactly when the bound says so
        assert counts == {"flagged_before": flagged, "flagged_after": flagged, "newly_flagged": 0}


def test_a_manifest_without_matching_clips_names_itself(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, 1)
    with pytest.raises(SystemExit, match="no real clips in split 'dev'"):
        run(None, manifest, "dev", "wideband", n_clips=3, seed=0)
