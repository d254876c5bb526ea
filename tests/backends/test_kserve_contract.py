"""The KServe v2 backend's pure parts and the Triton model repository export, without a server.

URL parsing, the served-tensor contract (:func:`check_signature`), metadata carried in a model config, the
``config.pbtxt`` the exporter writes (parsed with Triton's own protobuf schema when tritonclient is
installed) and that ``import stream_guard`` needs no tritonclient. The real-server tests are in
test_kserve_server.py.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from stream_guard.backends import BackendError, load_backend
from stream_guard.backends.kserve import (
    DEFAULT_PORT,
    DEFAULT_TIMEOUT_S,
    check_signature,
    is_remote_model,
    metadata_from_config,
    metadata_json,
    model_signature,
    parse_kserve_url,
)
from stream_guard.bundle import METADATA_KEY, BundleMetadata, read_metadata

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_url_forms() -> None:
    u = parse_kserve_url("grpc://gpu-box:9001/stfpm-lite0-v1?timeout=2.5&version=3")
    assert (u.host, u.port, u.model, u.version, u.timeout_s) == ("gpu-box", 9001, "stfpm-lite0-v1", "3", 2.5)
    assert str(u) == "grpc://gpu-box:9001/stfpm-lite0-v1" and u.address == "gpu-box:9001"
    d = parse_kserve_url("grpc://10.0.0.7/m")
    assert (d.port, d.version, d.timeout_s) == (DEFAULT_PORT, "", DEFAULT_TIMEOUT_S)
    assert parse_kserve_url("grpc://[::1]:8001/m").address == "[::1]:8001"
    assert is_remote_model("grpc://h/m") and is_remote_model("HTTP://h/m")
    assert not is_remote_model("bundle.onnx") and not is_remote_model(None) and not is_remote_model(Path("x"))


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://h:8000/m", "HTTP/REST is not supported"),
        ("grpcs://h/m", "TLS is not supported"),
        ("grpc://h:8001/", "model name is missing"),
        ("grpc://:8001/m", "host or the model name is missing"),
        ("grpc://h:99999/m", "port"),
        ("grpc://h/a/b", "is not a model name"),
        ("grpc://h/m?timeout=0", "timeout must be"),
        ("grpc://h/m?timeout=soon", "timeout must be"),
        ("grpc://h/m?version=latest", "version must be"),
        ("grpc://h/m?batch=4", "unknown option(s) batch"),
    ],
)
def test_bad_urls_say_what_is_expected(url: str, needle: str) -> None:
    with pytest.raises(BackendError) as err:
        parse_kserve_url(url)
    text = str(err.value)
    assert needle in text and text.startswith(url) and "\n" not in text


def test_load_backend_routes_urls_to_the_kserve_backend() -> None:
    with pytest.raises(BackendError, match=r"^http://h:8000/m: KServe v2 over HTTP/REST is not supported"):
        load_backend("http://h:8000/m")


def _served(meta: BundleMetadata, rows: int | None) -> dict:
    """The model metadata a server lists for the signature (``as_json`` form, batch dim first)."""
    audio, outputs = model_signature(meta, rows)

    def entry(spec):
        return {"name": spec.name, "datatype": "FP32", "shape": [str(d) for d in (-1, *spec.dims)]}

    return {"name": meta.name, "inputs": [entry(audio)], "outputs": [entry(o) for o in outputs]}


def test_signature_check_accepts_what_the_servers_declare(bundle_path: Path, time_bundle_path: Path) -> None:
    meta = read_metadata(bundle_path)
    check_signature(_served(meta, 16), meta, "grpc://h/m")
    tmeta = read_metadata(time_bundle_path)
    check_signature(_served(tmeta, None), tmeta, "grpc://h/m")


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda s: s["inputs"][0].update(name="wave"), "exactly one input 'audio'"),
        (lambda s: s["inputs"][0].update(datatype="FP16"), "'audio' is FP16, expected FP32"),
        (lambda s: s["inputs"][0].update(shape=["-1", "32000"]), "any number of samples"),
        (lambda s: s["outputs"].pop(1), "lacks the output(s) ['anomaly_map']"),
        (lambda s: s["outputs"][0].update(shape=["-1", "2"]), "'score' has shape [-1, 2]"),
        (lambda s: s["outputs"][1].update(shape=["-1", "20", "-1"]), "expected [-1, 16, -1]"),
        (lambda s: s["outputs"][1].update(shape=["-1", "-1"]), "'anomaly_map' has shape [-1, -1]"),
        (lambda s: s["outputs"][1].update(shape=["4", "16", "-1"]), "first dimension must be the batch"),
    ],
)
def test_signature_mismatches_are_named(bundle_path: Path, mutate, needle: str) -> None:
    meta = read_metadata(bundle_path)
    served = _served(meta, 16)
    mutate(served)
    with pytest.raises(BackendError) as err:
        check_signature(served, meta, "grpc://h/m")
    assert needle in str(err.value) and str(err.value).startswith("grpc://h/m: ")


def test_metadata_travels_in_the_model_config(bundle_path: Path) -> None:
    meta = read_metadata(bundle_path)
    config = {"name": "m", "parameters": {METADATA_KEY: {"string_value": metadata_json(meta)}}}
    assert metadata_from_config(config, "grpc://h/m") == meta
    with pytest.raises(BackendError, match="carries no stream-guard metadata"):
        metadata_from_config({"name": "m", "parameters": {}}, "grpc://h/m")
    broken = {"parameters": {METADATA_KEY: {"string_value": json.dumps({"format_version": 99})}}}
    with pytest.raises(BackendError, match="format version 99"):
        metadata_from_config(broken, "grpc://h/m")


# --- export/triton.py -----------------------------------------------------------------------------------


def test_export_writes_a_model_repository(bundle_path: Path, tmp_path: Path) -> None:
    from export.triton import RepositoryOptions, export_repository

    model_dir = export_repository(
        bundle_path, tmp_path / "repo", RepositoryOptions(max_batch=16, instances=2)
    )
    assert model_dir == tmp_path / "repo" / "test-band-energy"
    assert (model_dir / "1" / "model.onnx").read_bytes() == bundle_path.read_bytes()
    text = (model_dir / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in text and "max_batch_size: 16" in text and "count: 2" in text
    # exporting again replaces the entry whole and leaves no temporary folders behind
    export_repository(bundle_path, tmp_path / "repo", RepositoryOptions(max_batch=8))
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["test-band-energy"]
    assert "max_batch_size: 8" in (model_dir / "config.pbtxt").read_text()


def test_exported_config_parses_as_a_triton_model_config(bundle_path: Path, tmp_path: Path) -> None:
    text_format = pytest.importorskip("google.protobuf.text_format")
    mc = pytest.importorskip(
        "tritonclient.grpc.model_config_pb2", reason="tritonclient not installed (the [triton] extra)"
    )
    from export.triton import export_repository

    model_dir = export_repository(bundle_path, tmp_path / "repo")
    cfg = text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())
    assert (cfg.name, cfg.backend, cfg.max_batch_size) == ("test-band-energy", "onnxruntime", 32)
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [("audio", mc.TYPE_FP32, [-1])]
    score, amap = cfg.output
    assert (score.name, list(score.dims), score.HasField("reshape"), list(score.reshape.shape)) == (
        "score", [1], True, [],
    )  # fmt: skip
    assert (amap.name, list(amap.dims), amap.HasField("reshape")) == ("anomaly_map", [16, -1], False)
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 1000
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    carried = BundleMetadata.from_json(cfg.parameters[METADATA_KEY].string_value)
    assert asdict(carried) == asdict(read_metadata(bundle_path))


def test_export_time_track_bundle(time_bundle_path: Path, tmp_path: Path) -> None:
    from export.triton import export_repository

    text = (export_repository(time_bundle_path, tmp_path / "r") / "config.pbtxt").read_text()
    amap = text[text.index('name: "anomaly_map"') :]
    assert "dims: [ -1 ]" in amap.split("}")[0]


def test_export_cli_errors_are_one_line(tmp_path: Path, bundle_path: Path) -> None:
    fusion = tmp_path / "pair.fusion.json"
    fusion.write_text("{}")
    not_a_bundle = tmp_path / "x.onnx"
    not_a_bundle.write_bytes(b"not onnx")
    cases = [
        ([str(tmp_path / "missing.onnx")], "no such model file"),
        ([str(not_a_bundle)], "not a readable ONNX model"),
        ([str(fusion)], "serve it with `python -m stream_guard.backends.kserve_server"),
        ([str(bundle_path), "--name", "bad/name"], "is not a Triton model name"),
        ([str(bundle_path), "--max-batch", "0"], "max_batch and instances must be >= 1"),
    ]
    for args, needle in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "export", "triton", *args, "--repo", str(tmp_path / "repo")],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in proc.stderr and proc.stderr.count("\n") == 1, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_import_stream_guard_needs_no_triton_client() -> None:
    code = (
        "import sys, stream_guard, stream_guard.backends, stream_guard.backends.kserve\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tritonclient', 'pytriton', 'grpc')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=120)


def test_server_command_errors_are_one_line(tmp_path: Path) -> None:
    """Bad input to ``kserve_server`` (or a missing nvidia-pytriton) gives one line and status 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "stream_guard.backends.kserve_server", "--model", str(tmp_path / "gone.onnx")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    expected = (
        "no such model file"
        if importlib.util.find_spec("pytriton") is not None
        else "nvidia-pytriton is not installed (pip install 'stream-guard[pytriton]'"
    )
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
    assert proc.stderr.startswith("kserve_server: error: ") and proc.stderr.count("\n") == 1
