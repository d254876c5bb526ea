"""``stream-guard info`` on a real bundle and on files that are not bundles."""

from __future__ import annotations

import json
from pathlib import Path

from clihelpers import run_cli


def test_info_json_describes_the_bundle(tiny_bundle: Path) -> None:
    result = run_cli("info", str(tiny_bundle), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["metadata"]["name"] == "test-band-energy"
    assert info["metadata"]["sample_rate"] == 16000
    assert info["metadata"]["calibration"]["fitted_on"] == "test fixture"
    assert [i["name"] for i in info["graph"]["inputs"]] == ["audio"]
    assert {o["name"] for o in info["graph"]["outputs"]} == {"score", "anomaly_map"}
    assert len(info["sha256"]) == 64


def test_info_table_shows_calibration_and_provenance(tiny_bundle: Path) -> None:
    result = run_cli("info", str(tiny_bundle))
    assert result.returncode == 0, result.stderr
    assert "test-band-energy" in result.stdout
    assert "test fixture" in result.stdout
    assert "16000 Hz" in result.stdout


def test_info_rejects_a_text_file_named_onnx(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_text("this is not a model\n")
    result = run_cli("info", str(bogus))
    assert result.returncode == 2
    assert str(bogus) in result.stderr
    assert "not a readable ONNX model" in result.stderr
    assert "Traceback" not in result.stderr


def test_info_rejects_an_onnx_model_without_bundle_metadata(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path = tmp_path / "plain.onnx"
    onnx.save(model, str(path))
    result = run_cli("info", str(path))
    assert result.returncode == 2
    assert "not a stream-guard bundle" in result.stderr
    assert "Traceback" not in result.stderr


def test_info_missing_model_names_the_path(tmp_path: Path) -> None:
    result = run_cli("info", str(tmp_path / "nope.onnx"))
    assert result.returncode == 2
    assert "nope.onnx: no such model file" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_subcommands_with_examples() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("scan", "listen", "bench", "info"):
        assert command in result.stdout
    assert "examples:" in result.stdout


def test_info_describes_a_fusion_file_and_its_members(tmp_path: Path) -> None:
    from bundles import build_bundle

    from stream_guard.backends.fused import FusionMember, FusionSpec, sha256_file

    one = build_bundle(tmp_path / "oneclass.onnx")
    two = build_bundle(tmp_path / "supervised.onnx", kind="time")
    spec = FusionSpec(
        name="test-fusion",
        members=(
            FusionMember("oneclass", one.name, sha256_file(one)),
            FusionMember("supervised", two.name, sha256_file(two)),
        ),
        weights=(1.0, 0.5),
        bias=-2.0,
        threshold=0.0,
        fitted_on="test fixture",
    )
    fusion = spec.write(tmp_path / "pair.fusion.json")
    result = run_cli("info", str(fusion), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["metadata"]["family"] == "fused"
    assert info["metadata"]["name"] == "test-fusion"
    assert len(info["graph"]["inputs"]) == 2  # one `audio` input per member bundle


def test_info_rejects_a_json_file_that_is_not_a_fusion(tmp_path: Path) -> None:
    bogus = tmp_path / "x.fusion.json"
    bogus.write_text("{}")
    result = run_cli("info", str(bogus))
    assert result.returncode == 2
    assert "not a stream-guard fusion file" in result.stderr
    assert "Traceback" not in result.stderr
