"""The onnxruntime backend: provider choice, install checks and bundle validation."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from bundles import build_bundle, bundle_metadata, reference_outputs
from onnx import TensorProto, helper

from stream_guard.backends import BackendError, OnnxRuntimeBackend, load_backend
from stream_guard.backends import onnxruntime as ortb
from stream_guard.bundle import BundleError

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def test_infer_matches_numpy_reference(backend) -> None:
    x = (np.random.default_rng(0).standard_normal((3, 32000)) * 0.1).astype(np.float32)
    score, amap = backend.infer(x)
    ref_score, ref_map = reference_outputs(x)
    assert score.shape == (3,) and amap.shape == (3, 16, 50)
    np.testing.assert_allclose(score, ref_score, atol=1e-4)
    np.testing.assert_allclose(amap, ref_map, atol=1e-3)
    with pytest.raises(BackendError, match="batch, samples"):
        backend.infer(np.zeros(100, np.float32))


def test_provider_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ortb, "cuda_device_count", lambda: 0)
    # onnxruntime-gpu lists CUDA even without a GPU: auto must still choose the CPU
    assert ortb.resolve_providers("auto", [TRT, CUDA, CPU]) == [CPU]
    assert ortb.resolve_providers("cpu", [CUDA, CPU]) == [CPU]
    with pytest.raises(BackendError, match="no.*GPU|none was found"):
        ortb.resolve_providers("cuda", [CUDA, CPU])
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        ortb.resolve_providers("tensorrt", [CPU])
    with pytest.raises(BackendError, match="unknown provider"):
        ortb.resolve_providers("rocm", [CPU])
    monkeypatch.setattr(ortb, "cuda_device_count", lambda: 1)
    assert ortb.resolve_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert ortb.resolve_providers("tensorrt", [TRT, CUDA, CPU]) == [TRT, CUDA, CPU]
    with pytest.raises(BackendError, match="tensorrt"):
        ortb.resolve_providers("tensorrt", [CUDA, CPU])


def test_cuda_probe_never_raises() -> None:
    assert ortb.cuda_device_count() >= 0


def test_mixed_onnxruntime_install_is_refused(monkeypatch: pytest.MonkeyPatch, bundle_path) -> None:
    monkeypatch.setattr(
        ortb, "installed_onnxruntime_distributions", lambda: ["onnxruntime", "onnxruntime-gpu"]
    )
    with pytest.raises(BackendError, match="pip uninstall -y onnxruntime onnxruntime-gpu"):
        OnnxRuntimeBackend(bundle_path, provider="cpu")


def test_this_environment_has_one_onnxruntime() -> None:
    assert len(ortb.installed_onnxruntime_distributions()) == 1


def test_files_that_are_not_bundles(tmp_path) -> None:
    with pytest.raises(BundleError, match="no such model file"):
        load_backend(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not protobuf")
    with pytest.raises(BundleError, match="junk.onnx: not a readable ONNX model"):
        load_backend(junk)
    # a valid ONNX model without stream-guard metadata
    node = helper.make_node("Identity", ["audio"], ["score"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1])],
    )
    plain = tmp_path / "plain.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(plain))
    with pytest.raises(BundleError, match="not a stream-guard bundle"):
        load_backend(plain)
    # a bundle whose metadata is from the future
    future = build_bundle(tmp_path / "future.onnx", metadata=bundle_metadata(format_version=99))
    with pytest.raises(BundleError, match="format version 99"):
        load_backend(future)
    # a URL names a server (stream_guard.backends.kserve); a scheme it does not speak is refused at once
    with pytest.raises(BackendError, match="KServe v2 over HTTP/REST is not supported"):
        load_backend("http://localhost:8000/model")
    with pytest.raises(BackendError, match="threads"):
        load_backend(build_bundle(tmp_path / "ok.onnx"), threads=0)


def test_metadata_round_trip(bundle_path) -> None:
    b = load_backend(bundle_path, provider="cpu", threads=1)
    assert b.metadata.window_samples == 32000 and b.metadata.hop_samples == 8000
    assert b.metadata.min_samples == 8000 and len(b.metadata.map_axes.freq_hz) == 16
    assert json.loads(b.metadata.to_json())["name"] == "test-band-energy"
    assert b.device == "cpu" and b.providers == [CPU]


def test_provider_options_for_streaming(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    opts = dict(ortb.provider_options([TRT, CUDA, CPU]))
    assert opts[CUDA] == {"cudnn_conv_algo_search": "HEURISTIC"}
    assert opts[TRT]["trt_engine_cache_enable"] is True
    assert opts[TRT]["trt_engine_cache_path"] == str(tmp_path / "stream-guard" / "tensorrt")
    assert (tmp_path / "stream-guard" / "tensorrt").is_dir() and opts[CPU] == {}
