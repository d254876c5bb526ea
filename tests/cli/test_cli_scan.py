"""``stream-guard scan`` as a subprocess, the way users run it: real files, a real bundle, real inference."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from clihelpers import LOUD, QUIET, REPO, run_cli, speechlike

from stream_guard.events import EVENT_TYPES


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _check_event_shape(event: dict) -> None:
    """Every event has exactly the fields of its dataclass, plus ``type`` and ``v``."""
    cls = EVENT_TYPES[event["type"]]
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(event) == fields | {"v"}, event
    assert event["v"] == 1


def _check_schema(events: list[dict]) -> None:
    schema_path = REPO / "stream_guard" / "schemas" / "events.schema.json"
    if not schema_path.exists():
        return
    import jsonschema

    schema = json.loads(schema_path.read_text())
    for event in events:
        jsonschema.validate(event, schema)


def test_scan_jsonl_events_are_valid_and_the_summary_comes_last(tiny_bundle: Path, clip16k: Path) -> None:
    result = run_cli("scan", str(clip16k), "--model", str(tiny_bundle), "--jsonl", "-", "--quiet")
    assert result.returncode == 0, result.stderr
    events = _events(result.stdout)
    for event in events:
        _check_event_shape(event)
    _check_schema(events)
    assert {e["stream"] for e in events} == {str(clip16k)}
    assert events[-1]["type"] == "summary"
    assert [e["type"] for e in events].count("summary") == 1
    scores = [e for e in events if e["type"] == "score"]
    assert len(scores) >= 4  # 3 s of audio at a 0.5 s hop, warm-up windows included
    assert [s["window_index"] for s in scores] == list(range(len(scores)))
    assert all(s["model"] == "test-band-energy" and s["latency_ms"] >= 0 for s in scores)
    assert any(e["type"] == "map" for e in events)
    summary = events[-1]
    assert summary["duration_s"] == pytest.approx(3.0, abs=0.01)
    assert summary["windows"] == len(scores)
    assert summary["verdict"] in ("real", "synthetic", "uncertain")


def test_scan_summary_table_by_default(tiny_bundle: Path, clip16k: Path) -> None:
    result = run_cli("scan", str(clip16k), "--model", str(tiny_bundle))
    assert result.returncode == 0, result.stderr
    assert clip16k.name in result.stdout
    assert "verdict" in result.stdout and "test-band-energy" in result.stdout


def test_scan_verdicts_follow_the_scores(tiny_bundle: Path, tmp_path: Path) -> None:
    """The test bundle scores by level: a loud clip must come out synthetic and a quiet one real."""
    loud, quiet = tmp_path / "loud.wav", tmp_path / "quiet.wav"
    base = speechlike(4.0, 16000, seed=1)
    sf.write(loud, base * LOUD, 16000, subtype="FLOAT")
    sf.write(quiet, base * QUIET, 16000, subtype="FLOAT")
    result = run_cli("scan", str(loud), str(quiet), "--model", str(tiny_bundle), "--jsonl", "-", "--quiet")
    assert result.returncode == 0, result.stderr
    summaries = {e["stream"]: e for e in _events(result.stdout) if e["type"] == "summary"}
    assert summaries[str(loud)]["verdict"] == "synthetic"
    assert summaries[str(quiet)]["verdict"] == "real"
    assert summaries[str(loud)]["score"] > summaries[str(quiet)]["score"]


def test_scan_results_do_not_depend_on_the_block_size(tiny_bundle: Path, clip16k: Path) -> None:
    runs = []
    for block in ("0.05", "0.77", "5"):
        result = run_cli("scan", str(clip16k), "--model", str(tiny_bundle), "--jsonl", "-", "--block", block)
        assert result.returncode == 0, result.stderr
        runs.append([e["score"] for e in _events(result.stdout) if e["type"] == "score"])
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5)
    np.testing.assert_allclose(runs[0], runs[2], rtol=1e-5)


def test_scan_of_8khz_mulaw_wav_works_end_to_end(tiny_bundle: Path, tmp_path: Path) -> None:
    path = tmp_path / "call-8k-ulaw.wav"
    sf.write(path, speechlike(3.0, 8000, seed=2), 8000, subtype="ULAW")
    assert sf.info(str(path)).subtype == "ULAW"
    result = run_cli("scan", str(path), "--model", str(tiny_bundle), "--jsonl", "-")
    assert result.returncode == 0, result.stderr
    events = _events(result.stdout)
    summary = events[-1]
    assert summary["type"] == "summary" and summary["stream"] == str(path)
    assert summary["duration_s"] == pytest.approx(3.0, abs=0.01)
    assert summary["windows"] >= 4 and summary["score"] is not None


def test_scan_bad_inputs_fail_clearly_and_the_good_file_still_scans(
    tiny_bundle: Path, tmp_path: Path, clip16k: Path
) -> None:
    missing = tmp_path / "missing.wav"
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is a text file, not audio\n" * 20)
    nan = tmp_path / "nan.wav"
    audio = speechlike(3.0, 16000)
    audio[24000:24100] = np.nan
    sf.write(nan, audio, 16000, subtype="FLOAT")

    result = run_cli(
        "scan",
        str(missing),
        str(empty),
        str(text),
        str(nan),
        str(clip16k),
        "--model",
        str(tiny_bundle),
        "--jsonl",
        "-",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{missing}: no such file or directory" in result.stderr
    assert f"{empty}: file is empty" in result.stderr
    assert f"{text}: not a readable audio file" in result.stderr
    assert f"{nan}: contains NaN or infinite samples (first at 1.500 s)" in result.stderr

    events = _events(result.stdout)
    by_stream: dict[str, list[dict]] = {}
    for event in events:
        by_stream.setdefault(event["stream"], []).append(event)
    for bad in (missing, empty, text):
        assert [e["type"] for e in by_stream[str(bad)]] == ["error"]
        assert by_stream[str(bad)][0]["fatal"] is True
    assert any(e["type"] == "error" for e in by_stream[str(nan)])
    assert by_stream[str(nan)][-1]["type"] == "summary"  # what was scored before the NaN is kept
    assert by_stream[str(clip16k)][-1]["type"] == "summary"
    assert by_stream[str(clip16k)][-1]["windows"] >= 4


def test_scan_refuses_files_longer_than_max_duration(tiny_bundle: Path, clip16k: Path) -> None:
    result = run_cli("scan", str(clip16k), "--model", str(tiny_bundle), "--max-duration", "2")
    assert result.returncode == 1
    assert f"{clip16k}: is too long (0:00:03 of audio; the limit is 0:00:02" in result.stderr
    assert "Traceback" not in result.stderr


def test_scan_with_a_model_that_is_not_a_bundle(tmp_path: Path, clip16k: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    result = run_cli("scan", str(clip16k), "--model", str(bogus))
    assert result.returncode == 2
    assert str(bogus) in result.stderr and "not a readable ONNX model" in result.stderr
    assert "Traceback" not in result.stderr


def test_scan_of_only_bad_files_exits_1(tiny_bundle: Path, tmp_path: Path) -> None:
    result = run_cli("scan", str(tmp_path / "nothing-here.wav"), "--model", str(tiny_bundle))
    assert result.returncode == 1
    assert "nothing-here.wav: no such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_scan_map_png_writes_a_picture(tiny_bundle: Path, clip16k: Path, tmp_path: Path) -> None:
    out = tmp_path / "pics" / "map.png"
    result = run_cli("scan", str(clip16k), "--model", str(tiny_bundle), "--map-png", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000


def test_scan_per_channel_judges_each_channel(tiny_bundle: Path, tmp_path: Path) -> None:
    base = speechlike(3.0, 16000, seed=3)
    stereo = np.stack([base * LOUD, base * QUIET], axis=1)  # a loud and a quiet speaker
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 16000, subtype="FLOAT")
    result = run_cli("scan", str(path), "--model", str(tiny_bundle), "--per-channel", "--jsonl", "-")
    assert result.returncode == 0, result.stderr
    summaries = [e for e in _events(result.stdout) if e["type"] == "summary"]
    by_id = {s["stream"]: s for s in summaries}
    assert by_id[f"{path}/0"]["verdict"] == "synthetic"
    assert by_id[f"{path}/1"]["verdict"] == "real"
    assert summaries[-1]["stream"] == str(path)  # the combined summary is the file's last event
    assert summaries[-1]["verdict"] == "synthetic"
