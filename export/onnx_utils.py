"""Shared pieces of every bundle export: the dynamo export call, output pruning, metadata and parity.

The dynamo exporter (onnx + onnxscript) is the one that handles this graph; the legacy exporter fails on
complex STFTs. Weights are embedded (``external_data=False``) so a bundle is one file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch

from stream_guard.bundle import METADATA_KEY, BundleMetadata

OPSET = 18


class ExportError(RuntimeError):
    """The export or its parity check failed; the message says which and by how much."""


def dynamo_export(
    module: torch.nn.Module,
    example: torch.Tensor,
    output_names: Sequence[str],
    min_samples: int,
) -> onnx.ModelProto:
    """Export ``module(audio [B, S])`` with dynamic batch and samples (``S >= min_samples``)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    samples = torch.export.Dim("samples", min=min_samples, max=16000 * 3600)
    try:
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            input_names=["audio"],
            output_names=list(output_names),
            dynamic_shapes={"audio": {0: batch, 1: samples}},
            opset_version=OPSET,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    except Exception as exc:
        raise ExportError(f"ONNX export failed: {exc}") from exc
    return program.model_proto


def drop_outputs(model: onnx.ModelProto, keep: Sequence[str]) -> list[str]:
    """Remove graph outputs not in ``keep`` (their tensors stay in the graph); returns the removed names."""
    removed = [o.name for o in model.graph.output if o.name not in keep]
    kept = [o for o in model.graph.output if o.name in keep]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return removed


def set_bundle_metadata(model: onnx.ModelProto, meta: BundleMetadata) -> None:
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = meta.to_json()
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()


def save_bundle(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write atomically as one self-contained file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    onnx.save_model(model, str(tmp), save_as_external_data=False)
    os.replace(tmp, path)
    return path


def ort_session(path: str | Path, threads: int = 2):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def parity(
    module: torch.nn.Module,
    path: str | Path,
    batches: Sequence[np.ndarray],
    names: Sequence[str] = ("score", "anomaly_map"),
) -> dict[str, float]:
    """Max absolute difference PyTorch vs onnxruntime per output over ``batches`` of audio."""
    sess = ort_session(path)
    worst = {n: 0.0 for n in names}
    module.eval()
    with torch.no_grad():
        for x in batches:
            ref = module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
            got = sess.run(list(names), {"audio": np.ascontiguousarray(x, dtype=np.float32)})
            for n, r, g in zip(names, ref, got, strict=False):
                r = r.numpy()
                if r.shape != g.shape:
                    raise ExportError(
                        f"parity: output {n} has shape {g.shape} in ONNX but {r.shape} in PyTorch"
                    )
                worst[n] = max(worst[n], float(np.max(np.abs(r - g))))
    return worst
