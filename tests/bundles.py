"""Small, valid stream-guard bundles for tests, built with ``onnx.helper`` (no torch, no training).

The graph is a miniature of a real detector with the same contract: ``audio`` float32 ``[B, S]`` (any S) ->
frames of ``frame_step_s`` (Slice + Reshape) -> band energies by projection onto fixed cosine/sine bases at
``n_rows`` frequencies -> ``anomaly_map`` = log energy ``[B, F, T]`` (``[B, T]`` for a time-track bundle) and
``score`` = mean of the map ``[B]``. Louder audio scores higher, so tests steer verdicts by level, and every
map value depends on the audio, so stitching is tested on real numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SAMPLE_RATE = 16000
FRAME_STEP_S = 0.04
N_ROWS = 16


def bundle_metadata(**overrides: Any) -> dict[str, Any]:
    """Realistic metadata for the test bundle (16 kHz, 2 s windows, 0.5 s hop, 0.5 s minimum)."""
    freqs = np.linspace(125.0, 7000.0, N_ROWS).round(1).tolist()
    meta: dict[str, Any] = {
        "format_version": 1,
        "name": "test-band-energy",
        "family": "stfpm",
        "sample_rate": SAMPLE_RATE,
        "window_s": 2.0,
        "hop_s": 0.5,
        "min_audio_s": 0.5,
        "score_kind": "anomaly",
        "map_axes": {"kind": "time_frequency", "frame_step_s": FRAME_STEP_S, "freq_hz": freqs},
        # speechlike() at level 0.03 scores about -16.2, 0.1 about -14.2 ("real"), 0.3 about -12 ("synthetic")
        "calibration": {"threshold": -13.5, "center": -13.5, "scale": 0.5, "fitted_on": "test fixture"},
        "description": "test fixture: log band energies; not a detector",
        "training": {"data": "none", "steps": 0, "commit": "test"},
        "licence": "Apache-2.0",
        "extra": {},
    }
    meta.update(overrides)
    return meta


def build_bundle(
    path: str | Path, kind: str = "time_frequency", metadata: dict[str, Any] | None = None, opset: int = 17
) -> Path:
    """Write a bundle to ``path`` and return the path."""
    frame = int(round(FRAME_STEP_S * SAMPLE_RATE))
    t = np.arange(frame) / SAMPLE_RATE
    freqs = np.linspace(125.0, 7000.0, N_ROWS)
    win = np.hanning(frame)
    cos_b = (np.cos(2 * np.pi * freqs[None, :] * t[:, None]) * win[:, None] / frame).astype(np.float32)
    sin_b = (np.sin(2 * np.pi * freqs[None, :] * t[:, None]) * win[:, None] / frame).astype(np.float32)
    inits = [
        numpy_helper.from_array(cos_b, "cos_basis"),
        numpy_helper.from_array(sin_b, "sin_basis"),
        numpy_helper.from_array(np.array([frame], np.int64), "frame_len"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([0, -1, frame], np.int64), "frames_shape"),
        numpy_helper.from_array(np.array(1e-8, np.float32), "eps"),
    ]
    nodes = [
        helper.make_node("Shape", ["audio"], ["shape"]),
        helper.make_node("Slice", ["shape", "one", "frame_len"], ["n_samples"]),  # shape[1:frame] -> [S]
        helper.make_node("Div", ["n_samples", "frame_len"], ["n_frames"]),
        helper.make_node("Mul", ["n_frames", "frame_len"], ["usable"]),
        helper.make_node("Slice", ["audio", "zero", "usable", "one"], ["trimmed"]),
        helper.make_node("Reshape", ["trimmed", "frames_shape"], ["frames"]),  # [B, T, frame]
        helper.make_node("MatMul", ["frames", "cos_basis"], ["re"]),  # [B, T, F]
        helper.make_node("MatMul", ["frames", "sin_basis"], ["im"]),
        helper.make_node("Mul", ["re", "re"], ["re2"]),
        helper.make_node("Mul", ["im", "im"], ["im2"]),
        helper.make_node("Add", ["re2", "im2"], ["power"]),
        helper.make_node("Add", ["power", "eps"], ["power_eps"]),
        helper.make_node("Log", ["power_eps"], ["logp"]),
        helper.make_node("Transpose", ["logp"], ["tf_map"], perm=[0, 2, 1]),  # [B, F, T]
        helper.make_node("ReduceMean", ["tf_map"], ["score"], axes=[1, 2], keepdims=0),
    ]
    if kind == "time":
        nodes.append(helper.make_node("ReduceMean", ["tf_map"], ["anomaly_map"], axes=[1], keepdims=0))
        map_shape: list[Any] = ["batch", "frames"]
    else:
        nodes.append(helper.make_node("Identity", ["tf_map"], ["anomaly_map"]))
        map_shape = ["batch", N_ROWS, "frames"]
    graph = helper.make_graph(
        nodes,
        "test_bundle",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"]),
            helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, map_shape),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    meta = metadata or bundle_metadata()
    if kind == "time" and metadata is None:
        meta = bundle_metadata(map_axes={"kind": "time", "frame_step_s": FRAME_STEP_S, "freq_hz": []})
    onnx.helper.set_model_props(model, {"stream_guard": json.dumps(meta)})
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def reference_outputs(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixture's outputs computed in numpy (an independent check of the graph)."""
    frame = int(round(FRAME_STEP_S * SAMPLE_RATE))
    t = np.arange(frame) / SAMPLE_RATE
    freqs = np.linspace(125.0, 7000.0, N_ROWS)
    win = np.hanning(frame)
    x = np.asarray(audio, np.float64)
    n = x.shape[1] // frame
    frames = x[:, : n * frame].reshape(x.shape[0], n, frame)
    re = frames @ (np.cos(2 * np.pi * freqs[None, :] * t[:, None]) * win[:, None] / frame)
    im = frames @ (np.sin(2 * np.pi * freqs[None, :] * t[:, None]) * win[:, None] / frame)
    logp = np.log(re**2 + im**2 + 1e-8).transpose(0, 2, 1)
    return logp.mean(axis=(1, 2)), logp


def speechlike(seconds: float, rate: int = SAMPLE_RATE, level: float = 0.05, seed: int = 0) -> np.ndarray:
    """Deterministic noise modulated at a syllable rate: active for the energy gate, free of licences."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t)
    return (rng.standard_normal(n) * envelope * level).astype(np.float32)


def build_fused_pair(folder: Path) -> Path:
    """A time x frequency 'oneclass' bundle, a time-track 'supervised' one and ``pair.fusion.json`` over both
    (fixed weights, so a fused score is checkable by hand); returns the fusion file."""
    from stream_guard.backends.fused import FusionMember, FusionSpec, sha256_file

    oc = build_bundle(folder / "oneclass.onnx")
    sup = build_bundle(
        folder / "supervised.onnx", kind="time",
        metadata=bundle_metadata(name="test-time", family="supervised", score_kind="logit", min_audio_s=0.25),
    )  # fmt: skip
    spec = FusionSpec(
        name="test-fusion",
        members=(
            FusionMember("oneclass", oc.name, sha256_file(oc)),
            FusionMember("supervised", sup.name, sha256_file(sup)),
        ),
        weights=(0.7, -0.3),
        bias=1.25,
        threshold=0.4,
        fitted_on="test fixture",
    )
    return spec.write(folder / "pair.fusion.json")
