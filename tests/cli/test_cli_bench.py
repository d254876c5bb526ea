"""``stream-guard bench`` produces a complete report (its numbers are measurements: never asserted here)."""

from __future__ import annotations

import json
from pathlib import Path

from clihelpers import run_cli


def test_bench_writes_a_complete_json_report_and_plot(tiny_bundle: Path, tmp_path: Path) -> None:
    result = run_cli(
        "bench",
        "--model",
        str(tiny_bundle),
        "--streams",
        "3",
        "--seconds",
        "3",
        "--batch-sizes",
        "1,4",
        "--repeats",
        "2",
        "--naive-windows",
        "12",
        "--out",
        str(tmp_path),
        "--name",
        "smoke",
        "--providers",
        "cpu",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "smoke.json").read_text())
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"
    assert report["model"] == "test-band-energy"
    assert [(r["provider"], r["batch"]) for r in report["batch_latency"]] == [("cpu", 1), ("cpu", 4)]
    streams = report["streams"]
    assert streams["streams"] == 3
    # 3 s of audio at a 0.5 s hop: warm-up windows from 0.5 s, full windows from 2 s, a tail window
    assert streams["windows_scored"] >= 3 * 4
    for key in ("p50", "p95", "p99"):
        assert streams["latency_ms"][key] is not None
    assert streams["first_score_audio_s"]["max"] <= 1.0
    assert report["naive"]["windows"] == 12
    assert report["engine_vs_naive_ratio"] > 0


def test_bench_rejects_unknown_skip_parts(tiny_bundle: Path) -> None:
    result = run_cli("bench", "--model", str(tiny_bundle), "--skip", "everything")
    assert result.returncode == 2
    assert "--skip: unknown part(s) ['everything']" in result.stderr
