"""The file source: discovery, header checks and block reading, on real files written here."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_guard.sources.files import FileSourceError, discover, probe, read_blocks, stream_blocks


def _tone(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def test_discover_walks_directories_and_reports_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "one.wav", _tone(0.1, 8000), 8000)
    sf.write(tmp_path / "a" / "two.flac", _tone(0.1, 8000), 8000)
    (tmp_path / "a" / "notes.txt").write_text("not audio")
    (tmp_path / "empty").mkdir()
    found, errors = discover([tmp_path / "a", tmp_path / "missing.wav", tmp_path / "empty", tmp_path / "a"])
    assert [p.name for p in found] == ["one.wav", "two.flac"]
    messages = sorted(str(e) for e in errors)
    assert any("missing.wav: no such file or directory" in m for m in messages)
    assert any("empty: directory contains no audio files" in m for m in messages)


def test_probe_reads_rate_channels_and_duration(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    sf.write(path, _tone(0.5, 22050, channels=2), 22050, subtype="PCM_16")
    info = probe(path)
    assert (info.sample_rate, info.channels, info.frames) == (22050, 2, 11025)
    assert info.duration_s == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "file is empty"), (b"hello, I am text\n" * 10, "not a readable audio file")],
)
def test_probe_rejects_empty_and_text_files(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(FileSourceError) as err:
        probe(path)
    assert str(err.value).startswith(str(path))
    assert problem in str(err.value)


def test_probe_rejects_files_longer_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, _tone(2.0, 8000), 8000)
    with pytest.raises(FileSourceError, match="too long"):
        probe(path, max_duration_s=1.0)


def test_probe_rejects_a_header_without_samples(tmp_path: Path) -> None:
    path = tmp_path / "nothing.wav"
    sf.write(path, np.zeros((0, 1), dtype=np.float32), 16000)
    with pytest.raises(FileSourceError, match="no audio samples"):
        probe(path)


def test_read_blocks_returns_the_whole_file_in_order(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    audio = _tone(1.0, 16000, channels=2)
    sf.write(path, audio, 16000, subtype="FLOAT")
    blocks = list(read_blocks(probe(path), 3000))
    assert all(b.dtype == np.float32 and b.shape[1] == 2 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), audio)


def test_read_blocks_names_the_time_of_the_first_nan(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    audio = _tone(1.0, 8000)
    audio[6000] = np.nan
    sf.write(path, audio, 8000, subtype="FLOAT")
    with pytest.raises(FileSourceError, match=r"NaN or infinite samples \(first at 0.750 s\)"):
        list(read_blocks(probe(path), 1000))


def test_stream_blocks_yields_all_audio(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    audio = _tone(0.3, 8000)
    sf.write(path, audio, 8000, subtype="FLOAT")

    async def collect() -> np.ndarray:
        return np.concatenate([b async for b in stream_blocks(probe(path), block_s=0.05)])

    np.testing.assert_array_equal(asyncio.run(collect()), audio)
