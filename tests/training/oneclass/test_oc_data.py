"""Manifest and audio errors name the file; crops and windows behave as documented."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.oneclass.data import (
    AudioCache,
    CropSampler,
    DataError,
    load_clip,
    read_manifest,
    require,
    select,
    subsample,
    windows,
)

HEADER = ["path", "label", "system", "family", "source", "speaker", "language", "band", "channel", "split",
          "duration", "licence"]  # fmt: skip


def write_manifest(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def row(p: str, label: str = "bonafide", split: str = "train", speaker: str = "s1") -> list[str]:
    return [p, label, "-", "none", "src", speaker, "en", "wideband", "wideband", split, "1.0", "CC0"]


def test_manifest_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv")
    empty = write_manifest(tmp_path / "empty.csv", [])
    with pytest.raises(DataError, match="empty.csv: manifest lists no audio"):
        read_manifest(empty)
    cols = write_manifest(tmp_path / "cols.csv", [["a.wav", "bonafide"]], header=["path", "label"])
    with pytest.raises(DataError, match=r"cols.csv: manifest lacks the column\(s\) \['split'\]"):
        read_manifest(cols)
    lab = write_manifest(tmp_path / "lab.csv", [row("a.wav"), row("b.wav", label="maybe")])
    with pytest.raises(DataError, match="lab.csv:3: unknown label 'maybe'"):
        read_manifest(lab)


def test_empty_class_is_a_clear_error(tmp_path: Path) -> None:
    m = write_manifest(tmp_path / "m.csv", [row("a.wav"), row("b.wav", split="dev")])
    clips = read_manifest(m)
    assert clips[0].path == tmp_path / "a.wav"  # relative paths resolve against the manifest
    with pytest.raises(DataError, match="no clips for dev spoof"):
        require(select(clips, "dev", "spoof"), "dev spoof", m)


def test_unreadable_empty_and_nan_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really a wav file at all" * 10)
    with pytest.raises(DataError, match="garbage.wav"):
        load_clip(garbage, 16000)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.wav"):
        load_clip(empty, 16000)
    nan = tmp_path / "nan.wav"
    x = np.zeros(1600, np.float32)
    x[100] = np.nan
    sf.write(nan, x, 16000, subtype="FLOAT")
    with pytest.raises(DataError, match="nan.wav.*NaN"):
        load_clip(nan, 16000)
    with pytest.raises(DataError, match="missing.wav"):
        load_clip(tmp_path / "missing.wav", 16000)


def test_clips_are_resampled_to_the_model_rate(tmp_path: Path) -> None:
    p = tmp_path / "8k.wav"
    sf.write(p, np.sin(np.arange(8000) * 0.1).astype(np.float32) * 0.5, 8000)
    assert len(load_clip(p, 16000)) == 16000


def test_windows_cover_the_clip_as_the_runtime_does() -> None:
    x = np.arange(50, dtype=np.float32)
    got = list(windows(x, 20, 10, 5))
    assert [int(w[0]) for w in got] == [0, 10, 20, 30]
    assert all(len(w) == 20 for w in got)
    assert [len(w) for w in windows(x[:12], 20, 10, 5)] == [12]  # shorter than a window: scored as is
    assert list(windows(x[:4], 20, 10, 5)) == []  # below the minimum: not scored
    tail = list(windows(x[:45], 20, 10, 5))
    assert int(tail[-1][-1]) == 44  # the tail is covered by a last full window


def test_crops_are_reproducible_and_never_zero_padded(tmp_path: Path) -> None:
    rows = []
    for i, n in enumerate((4000, 6000, 30000)):
        p = tmp_path / f"c{i}.wav"
        sf.write(p, (np.random.default_rng(i).standard_normal(n) * 0.1).astype(np.float32), 16000)
        rows.append(row(p.name))
    clips = read_manifest(write_manifest(tmp_path / "m.csv", rows))
    sampler = CropSampler(clips, AudioCache(), 16000, seed=7)
    a, _ = sampler.crop_at(0, 3)
    b, _ = sampler.crop_at(0, 3)
    c, _ = sampler.crop_at(1, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    for k in range(20):
        crop, _ = sampler.crop_at(0, k)
        assert len(crop) == 16000
        run = np.max(np.diff(np.flatnonzero(np.r_[1, crop != 0, 1]))) - 1
        assert run < 5, "a crop must not contain padded digital silence"


def test_subsample_is_deterministic_and_spreads_over_groups(tmp_path: Path) -> None:
    rows = [row(f"{s}{i}.wav", label="spoof") for s in "ab" for i in range(10)]
    rows = [r[:2] + [r[0][0]] + r[3:] for r in rows]  # system = first letter
    clips = read_manifest(write_manifest(tmp_path / "m.csv", rows))
    pick = subsample(clips, 6, key="x")
    assert pick == subsample(clips, 6, key="x")
    assert {c.system for c in pick} == {"a", "b"}
