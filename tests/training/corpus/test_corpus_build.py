"""The corpus build end to end on fake unpacked packages (speech made with espeak-ng at test time): manifest
contents, channels, shortcut removal on stored clips, splits, bad input, idempotence and resume."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rich.console import Console

from training.audio_io import LevelConfig, active_rms_dbfs
from training.corpus.build import PROFILES, BuildReport, ProcessConfig, build
from training.corpus.manifest import COLUMNS, read_manifest
from training.corpus.vad import silero_model_path

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("flite") is None, reason="needs espeak-ng and flite"
)

PROFILE = replace(
    PROFILES["tiny"],
    real_per_group=None,
    tts_per_voice={"espeak": 2, "flite_kal16": 2},
    resynth_count={"world": 1, "griffinlim": 1},
)


def _build(cache: Path, capsys_console: Console | None = None) -> BuildReport:
    console = capsys_console or Console(file=open(os.devnull, "w"), width=200)  # noqa: SIM115
    return build(PROFILE, cache, jobs=1, console=console)


@pytest.fixture(scope="module")
def built(tiny_cache: tuple[Path, dict[str, list[str]]]) -> tuple[Path, BuildReport, dict[str, list[str]]]:
    cache, bad = tiny_cache
    return cache, _build(cache), bad


def test_manifest_has_every_column_and_both_channels(built) -> None:
    cache, report, _ = built
    assert report.manifest == cache / "corpus" / "tiny" / "manifest.csv"
    header = report.manifest.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header == COLUMNS
    rows = read_manifest(report.manifest)
    assert len(rows) == report.rows
    by_clip: dict[str, set[str]] = {}
    for r in rows:
        by_clip.setdefault(r.clip_id, set()).add(r.channel)
        assert Path(r.path).is_file()
    assert all(ch == {"wideband", "telephone"} for ch in by_clip.values())
    labels = {r.label for r in rows}
    assert labels == {"bonafide", "spoof"}
    systems = {r.system for r in rows}
    assert systems == {"bonafide", "espeak", "flite_kal16", "world", "griffinlim"}
    assert {r.family for r in rows if r.system == "espeak"} == {"formant"}
    assert {r.family for r in rows if r.system == "flite_kal16"} == {"diphone"}


def test_stored_clips_have_no_shortcuts(built) -> None:
    """16 kHz mono, active level -26 dBFS, peak <= -1 dBFS (+ dither), no runs of digital zeros, no silent
    edges."""
    _, report, _ = built
    for r in read_manifest(report.manifest):
        x, sr = sf.read(r.path, dtype="float32")
        assert sr == 16000 and x.ndim == 1
        assert abs(r.duration - x.shape[0] / sr) < 1e-3
        assert r.duration >= 0.8
        assert abs(active_rms_dbfs(x, sr) - -26.0) < 1.0 or np.max(np.abs(x)) > 10 ** (-1.5 / 20)
        assert np.max(np.abs(x)) <= 10 ** (-1.0 / 20) + 1e-3
        zero = np.flatnonzero(x == 0.0)
        longest = max((len(run) for run in np.split(zero, np.flatnonzero(np.diff(zero) != 1) + 1)), default=0)
        assert longest < 16, f"{r.path}: {longest} consecutive exact zeros"
        edge = int(0.1 * sr)
        for part in (
            x[:edge],
            x[-edge:],
        ):  # trimmed: the edges are within 40 dB + margin of speech, not silence
            assert 20 * np.log10(np.sqrt(np.mean(part**2)) + 1e-12) > -90


def test_telephone_copy_is_band_limited_and_wideband_copy_is_not(built) -> None:
    _, report, _ = built
    rows = [r for r in read_manifest(report.manifest) if r.label == "bonafide"]
    clip = rows[0].clip_id
    pair = {r.channel: sf.read(r.path, dtype="float32")[0] for r in rows if r.clip_id == clip}

    def hf_fraction(x: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(x.shape[0], 1 / 16000)
        return float(spec[f > 4200].sum() / spec.sum())

    assert hf_fraction(pair["telephone"]) < 1e-4
    assert hf_fraction(pair["wideband"]) > 10 * hf_fraction(pair["telephone"])


def test_splits_follow_the_rules(built) -> None:
    _, report, _ = built
    rows = read_manifest(report.manifest)
    for r in rows:
        if r.source == "asterisk":
            assert r.split == ("eval" if r.language == "ru" else "train"), r
        if r.source == "fillets_cs":
            expected = {"m": "train", "v": "train", "hs": "dev", "b1": "dev", "c": "eval", "b2": "eval"}
            assert r.split == expected[r.speaker.split("-", 1)[1]], r
        if r.label == "spoof":
            assert (
                r.split
                == {"espeak": "dev", "flite_kal16": "eval", "world": "dev", "griffinlim": "eval"}[r.system]
            )
    real = {r.clip_id: r for r in rows if r.label == "bonafide"}
    resynth = [r for r in rows if r.system in ("world", "griffinlim")]
    assert len({r.clip_id for r in resynth}) == 2
    for r in resynth:  # made from held-out real clips that are in the corpus, of the system's own split
        assert r.parent in real and real[r.parent].split == r.split != "train"
        assert r.family == "vocoder" and r.source == real[r.parent].source
    speakers: dict[str, set[str]] = {}
    for r in rows:
        speakers.setdefault(r.speaker, set()).add(r.split)
    assert all(len(s) == 1 for s in speakers.values()), "a speaker appears in more than one split"


def test_bad_input_is_skipped_with_the_file_named(built) -> None:
    _, report, bad = built
    reasons = " | ".join(reason for _, _, reason in report.skipped)
    for names in bad.values():
        for name in names:
            assert name in reasons, f"{name} not reported among skipped clips: {reasons}"
    assert "too short after trimming" in reasons
    if silero_model_path() is not None:  # the speech check needs the silero-vad wheel
        hum = [reason for _, cid, reason in report.skipped if cid.endswith("lv1-v-hum")]
        assert hum and "no speech detected" in hum[0]
    ids = {r.clip_id for r in read_manifest(report.manifest)}
    assert not any("silence" in i for i in ids)
    assert not any("empty" in i or "garbage" in i for i in ids)
    skipped_csv = report.manifest.parent / "skipped.csv"
    assert "lv0-m-garbage.ogg" in skipped_csv.read_text(encoding="utf-8")


def test_rebuild_is_idempotent_and_resumes(built) -> None:
    cache, report, _ = built
    rows = read_manifest(report.manifest)
    mtimes = {r.path: os.stat(r.path).st_mtime_ns for r in rows}
    again = _build(cache)
    assert again.rows == report.rows
    assert {r.path: os.stat(r.path).st_mtime_ns for r in read_manifest(again.manifest)} == mtimes
    # simulate a kill: one clip's sidecar and audio gone -> only that clip is redone, with the same samples
    victim = rows[0]
    before = sf.read(victim.path, dtype="float32")[0]
    (report.manifest.parent / "rows" / f"{victim.clip_id}.json").unlink()
    for r in rows:
        if r.clip_id == victim.clip_id:
            Path(r.path).unlink()
    resumed = _build(cache)
    assert resumed.rows == report.rows
    after = sf.read(victim.path, dtype="float32")[0]
    np.testing.assert_array_equal(before, after)
    untouched = [r for r in rows if r.clip_id != victim.clip_id]
    assert all(os.stat(r.path).st_mtime_ns == mtimes[r.path] for r in untouched)
    # leftovers of earlier builds (clips no longer planned or no longer usable) are removed
    stray = report.manifest.parent / "audio" / "wideband" / "asterisk" / "gone-clip.flac"
    stray.write_bytes(b"x")
    (report.manifest.parent / "rows" / "gone-clip.json").write_text("{}")
    _build(cache)
    assert not stray.exists() and not (report.manifest.parent / "rows" / "gone-clip.json").exists()


@pytest.mark.slow
def test_other_settings_redo_finished_clips(built) -> None:
    """Finished clips are not reused after the processing settings change: they are redone with the new
    ones."""
    cache, report, _ = built
    console = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    louder = build(
        PROFILE, cache, jobs=1, console=console, config=ProcessConfig(level=LevelConfig(-20.0, -1.0))
    )
    levels = [active_rms_dbfs(*sf.read(r.path, dtype="float32")) for r in read_manifest(louder.manifest)]
    assert np.median(levels) == pytest.approx(-20.0, abs=0.5)
    _build(cache)  # back to the default settings for the other tests


def test_a_package_without_audio_is_reported_and_the_rest_is_built(tmp_path: Path, tiny_cache) -> None:
    cache, _ = tiny_cache
    other = tmp_path / "cache"
    shutil.copytree(cache / "unpacked", other / "unpacked")
    shutil.rmtree(other / "unpacked" / "fillets-ng-data-cs" / "usr")
    (other / "unpacked" / "fillets-ng-data-cs" / "usr").mkdir()
    log = tmp_path / "log.txt"
    with log.open("w") as fh:
        report = build(PROFILE, other, jobs=1, console=Console(file=fh, width=300))
    text = log.read_text()
    assert "fillets-ng-data-cs: no audio found" in text
    rows = read_manifest(report.manifest)
    assert rows and {r.source for r in rows if r.label == "bonafide"} == {"asterisk"}


def test_cli_stats_and_argument_errors(built, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from training.corpus.__main__ import main

    _, report, _ = built
    assert main(["stats", str(report.manifest), "--markdown"]) == 0
    out = capsys.readouterr().out
    rows = read_manifest(report.manifest)
    n_train_asterisk = len({r.clip_id for r in rows if r.source == "asterisk" and r.split == "train"})
    assert f"| bonafide | asterisk | train | {n_train_asterisk} |" in out
    assert "telephone+wideband" in out
    assert main(["stats", str(tmp_path / "none.csv")]) == 2
    assert main(["build", "--profile", "tiny", "--channels", "satellite", "--cache", str(tmp_path)]) == 2
    assert (
        main(["build", "--profile", "tiny", "--debs", str(tmp_path / "nope"), "--cache", str(tmp_path)]) == 2
    )
    err = capsys.readouterr().err
    assert "manifest not found" in err and "satellite" in err and "not a folder" in err
