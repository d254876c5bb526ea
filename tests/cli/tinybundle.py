"""A tiny, deterministic stream-guard bundle built with onnx.helper (no torch, builds in milliseconds).

The graph is a fixed filterbank: a strided Conv1d of cosine kernels turns ``audio [B, S]`` into a log-energy
map ``[B, F, T]`` (one row per filter frequency, one column per 40 ms frame) and the score is the map's mean.
It is no detector, but it honours the whole bundle contract (input/outputs, dynamic batch and length,
metadata), and its scores depend on the audio, so tests of the command line exercise real inference end to
end.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
FRAME = 640  # 40 ms
FREQS = (150.0, 300.0, 600.0, 1200.0, 2400.0, 4800.0)


def tiny_metadata(name: str = "tiny-filterbank", threshold: float = -4.0) -> dict:
    return {
        "format_version": 1,
        "name": name,
        "family": "stfpm",
        "sample_rate": SAMPLE_RATE,
        "window_s": 1.0,
        "hop_s": 0.5,
        "min_audio_s": 0.25,
        "score_kind": "anomaly",
        "map_axes": {"kind": "time_frequency", "frame_step_s": FRAME / SAMPLE_RATE, "freq_hz": list(FREQS)},
        "calibration": {
            "threshold": threshold,
            "center": threshold,
            "scale": 1.0,
            "fitted_on": "nothing: a test filterbank",
        },
        "description": "test bundle: a fixed filterbank, not a detector",
        "training": {"data": "none", "steps": 0, "commit": "test"},
        "licence": "Apache-2.0",
        "extra": {},
    }


def build_tiny_bundle(path: Path, metadata: dict | None = None) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    t = np.arange(FRAME) / SAMPLE_RATE
    window = np.hanning(FRAME)
    kernels = np.stack([np.cos(2 * np.pi * f * t) * window for f in FREQS]).astype(np.float32)[:, None, :]
    kernels /= np.float32(FRAME / 4)
    nodes = [
        helper.make_node("Unsqueeze", ["audio", "axis1"], ["x3"]),
        helper.make_node("Conv", ["x3", "kernels"], ["bands"], strides=[FRAME], kernel_shape=[FRAME]),
        helper.make_node("Mul", ["bands", "bands"], ["power"]),
        helper.make_node("Add", ["power", "floor"], ["power_floored"]),
        helper.make_node("Log", ["power_floored"], ["anomaly_map"]),
        helper.make_node("ReduceMean", ["anomaly_map", "axes12"], ["score"], keepdims=0),
    ]
    inits = [
        numpy_helper.from_array(kernels, "kernels"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes12"),
        numpy_helper.from_array(np.array(1e-6, dtype=np.float32), "floor"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"]),
            helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["batch", len(FREQS), "frames"]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="tests")
    model.ir_version = 9
    helper.set_model_props(model, {"stream_guard": json.dumps(metadata or tiny_metadata())})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
