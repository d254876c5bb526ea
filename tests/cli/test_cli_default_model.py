"""The commands on the default model, the embedded fused pair: ``info`` shows both bundles and the fusion,
``scan`` reports the threshold next to the probability, ``calibrate`` refits the pair (or says what to do),
``bench`` names both bundles."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from bundles import build_bundle
from clihelpers import run_cli, speechlike

from stream_guard.backends import FusedBackend
from stream_guard.backends.fused import FusionMember, FusionSpec, read_fusion, sha256_file
from stream_guard.bundle import default_model_path
from stream_guard.cli.calibrate import batches, collect_windows


@pytest.fixture(scope="module")
def shipped() -> FusionSpec:
    return read_fusion(default_model_path())


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Half a minute of speech-like audio at two levels and two rates: the 'site's real speech'."""
    folder = tmp_path_factory.mktemp("site-real")
    for i, (rate, gain) in enumerate([(16000, 0.6), (8000, 1.0), (16000, 0.3)]):
        sf.write(folder / f"call{i}.wav", gain * speechlike(10.0, rate, seed=i), rate, subtype="PCM_16")
    return folder


def test_info_without_a_model_shows_the_fusion_and_both_bundles(shipped: FusionSpec) -> None:
    result = run_cli("info", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["kind"] == "fused" and info["embedded_default"] is True
    assert info["path"] == str(default_model_path())
    fusion = info["fusion"]
    assert fusion["weights"] == list(shipped.weights) and fusion["bias"] == shipped.bias
    assert fusion["threshold"] == shipped.threshold
    assert fusion["threshold_probability"] == pytest.approx(1 / (1 + math.exp(-shipped.threshold)))
    members = {m["role"]: m for m in info["members"]}
    assert set(members) == {"oneclass", "supervised"}
    for m in shipped.members:
        assert members[m.role]["file"] == m.file and members[m.role]["sha256"] == m.sha256
        assert members[m.role]["metadata"]["calibration"]["fitted_on"]
    assert members["oneclass"]["metadata"]["family"] == "stfpm"

    table = run_cli("info")
    assert table.returncode == 0, table.stderr
    assert "score(oneclass)" in table.stdout and "score(supervised)" in table.stdout
    assert f"P(synthetic) >= {fusion['threshold_probability']:.3f}" in table.stdout
    assert "member 'oneclass'" in table.stdout and "member 'supervised'" in table.stdout


def test_info_reaches_the_one_class_bundle_by_short_name() -> None:
    result = run_cli("info", "oneclass", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["kind"] == "bundle" and info["embedded"] is True
    assert info["metadata"]["family"] == "stfpm" and Path(info["path"]).name == "default.onnx"


def test_scan_on_the_default_reports_the_threshold_the_probability_is_compared_with(tmp_path: Path) -> None:
    clip = tmp_path / "clip.wav"
    sf.write(clip, speechlike(3.0, 16000), 16000, subtype="PCM_16")
    result = run_cli("scan", str(clip), "--jsonl", "-", "--no-progress")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    summary = events[-1]
    assert summary["type"] == "summary" and summary["model"] == read_fusion(default_model_path()).name
    assert summary["verdict"] == (
        "synthetic" if summary["probability"] >= summary["threshold_probability"] else "real"
    )

    table = run_cli("scan", str(clip), "--no-progress")
    assert table.returncode == 0, table.stderr
    assert f"synthetic when P(synth) >= {summary['threshold_probability']:.2f}" in table.stdout


def test_calibrate_refits_the_fused_default(real_folder: Path, tmp_path: Path, shipped: FusionSpec) -> None:
    out = tmp_path / "site" / "site.fusion.json"
    result = run_cli("calibrate", "--real", str(real_folder), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    new = read_fusion(out)
    files = {m.role: out.parent / m.file for m in new.members}
    assert files == {
        "oneclass": out.parent / "site.oneclass.onnx",
        "supervised": out.parent / "site.supervised.onnx",
    }
    for m in new.members:  # the fusion pins the bundles written next to it
        assert sha256_file(files[m.role]) == m.sha256
    old = {m.role: m.sha256 for m in shipped.members}
    assert new.members[1].sha256 == old["supervised"]  # copied unchanged
    assert new.members[0].sha256 != old["oneclass"]  # DS statistics refitted
    assert new.weights[1] == shipped.weights[1] and new.weights[0] != shipped.weights[0]
    assert report["weights_after"] == list(new.weights) and report["threshold_after"] == new.threshold
    assert new.fitted_on and "stream-guard calibrate" in new.fitted_on

    # the new threshold is the 95th percentile of the recalibrated pair's fused logits on that real speech
    backend = FusedBackend(out, provider="cpu", threads=1)
    try:
        windows = collect_windows(real_folder, backend.metadata).windows
        logits = np.concatenate([backend.infer(x)[0] for x in batches(windows, 16)])
    finally:
        backend.close()
    assert report["windows"] == len(windows)
    assert new.threshold == pytest.approx(float(np.quantile(logits.astype(np.float64), 0.95)), abs=1e-5)
    assert np.mean(logits >= new.threshold) <= 0.06

    scan = run_cli(
        "scan", str(real_folder / "call0.wav"), "--model", str(out), "--jsonl", "-", "--no-progress"
    )
    assert scan.returncode == 0, scan.stderr
    assert json.loads(scan.stdout.splitlines()[-1])["model"] == f"{shipped.name}-calibrated"


def test_calibrate_on_the_fused_default_with_a_bundle_output_says_what_to_do(
    real_folder: Path, tmp_path: Path
) -> None:
    result = run_cli("calibrate", "--real", str(real_folder), "--out", str(tmp_path / "site.onnx"))
    assert result.returncode == 2
    assert "--out site.fusion.json" in result.stderr and "--model oneclass" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "site.onnx").exists()


def test_calibrate_refuses_a_fusion_without_a_one_class_member(real_folder: Path, tmp_path: Path) -> None:
    a = build_bundle(tmp_path / "a.onnx", kind="time")
    b = build_bundle(tmp_path / "b.onnx", kind="time")
    spec = FusionSpec(
        name="two-supervised",
        members=(
            FusionMember("supervised", a.name, sha256_file(a)),
            FusionMember("other", b.name, sha256_file(b)),
        ),
        weights=(1.0, 1.0),
        bias=0.0,
        threshold=0.0,
        explanation="supervised",
    )
    fusion = spec.write(tmp_path / "pair.fusion.json")
    result = run_cli(
        "calibrate",
        "--model",
        str(fusion),
        "--real",
        str(real_folder),
        "--out",
        str(tmp_path / "o.fusion.json"),
    )
    assert result.returncode == 2
    assert "no 'oneclass' member" in result.stderr and "Traceback" not in result.stderr


def test_bench_on_the_default_names_both_bundles(tmp_path: Path, shipped: FusionSpec) -> None:
    result = run_cli(
        "bench",
        "--streams", "2", "--seconds", "2.5", "--batch-sizes", "1", "--repeats", "1", "--skip", "naive",
        "--providers", "cpu", "--out", str(tmp_path), "--name", "fused",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "fused.json").read_text())
    assert report["embedded_default"] is True and report["model_family"] == "fused"
    assert report["model_path"] == str(default_model_path())
    assert [(b["role"], b["file"], b["sha256"]) for b in report["bundles"]] == [
        (m.role, m.file, m.sha256) for m in shipped.members
    ]
    assert report["streams"]["windows_scored"] > 0
