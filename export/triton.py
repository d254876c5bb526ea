"""``python -m export triton BUNDLE --repo DIR``: a Triton model repository that serves a stream-guard bundle.

Writes ``DIR/NAME/config.pbtxt`` and ``DIR/NAME/1/model.onnx`` (the bundle, byte for byte) for Triton's ONNX
Runtime backend, with dynamic batching and the tensors every stream-guard server declares
(:func:`stream_guard.backends.kserve.model_signature`): ``audio`` FP32 ``[-1]`` per item, ``score`` ``[1]``
(reshaped from the bundle's ``[batch]``) and ``anomaly_map`` ``[F, -1]`` (or ``[-1]``). The bundle's metadata
JSON goes into the config as the parameter ``stream_guard``, where the KServe v2 backend reads calibration
and map axes from, so front ends need nothing but the URL ``grpc://HOST:8001/NAME``.

A full Triton server then serves it with its own GPU / TensorRT execution::

    tritonserver --model-repository DIR

A fusion file (two bundles and a logistic regression) has no single ONNX graph: serve it with
``python -m stream_guard.backends.kserve_server`` instead. After ``stream-guard calibrate`` rewrites a
bundle, export the repository again (the calibration lives in the config's metadata).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from stream_guard.backends.kserve import MODEL_NAME_PATTERN, TensorSpec, metadata_json, model_signature
from stream_guard.bundle import METADATA_KEY, BundleError, BundleMetadata, read_metadata

MODEL_FILE = "model.onnx"
INSTANCE_KINDS = ("cpu", "gpu")


class TritonExportError(RuntimeError):
    """The repository cannot be written; the message names the file and the problem."""


@dataclass(frozen=True)
class RepositoryOptions:
    """Serving settings written into ``config.pbtxt``."""

    name: str | None = None  # default: the bundle's metadata name
    max_batch: int = 32
    max_queue_delay_us: int = 1000
    instances: int = 1
    kind: str = "cpu"  # instance_group kind: cpu or gpu

    def check(self) -> None:
        if self.max_batch < 1 or self.instances < 1 or self.max_queue_delay_us < 0:
            raise TritonExportError("max_batch and instances must be >= 1, max_queue_delay_us >= 0")
        if self.kind not in INSTANCE_KINDS:
            raise TritonExportError(f"kind must be one of {', '.join(INSTANCE_KINDS)}, got {self.kind!r}")


def _pbtxt_string(text: str) -> str:
    """A protobuf text-format string literal (double quotes, backslash escapes)."""
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{out}"'


def _dims(dims: tuple[int, ...]) -> str:
    return ("[ " + ", ".join(str(d) for d in dims) + " ]") if dims else "[ ]"


def _tensor_block(spec: TensorSpec) -> str:
    lines = [
        f"    name: {_pbtxt_string(spec.name)}",
        "    data_type: TYPE_FP32",
        f"    dims: {_dims(spec.dims)}",
    ]
    if spec.reshape is not None:
        lines.append(f"    reshape: {{ shape: {_dims(spec.reshape)} }}")
    return "  {\n" + "\n".join(lines) + "\n  }"


def render_config(name: str, metadata: BundleMetadata, map_rows: int | None, opts: RepositoryOptions) -> str:
    """The ``config.pbtxt`` text for a bundle (pure function; see the module docstring)."""
    audio, outputs = model_signature(metadata, map_rows)
    kind = "KIND_GPU" if opts.kind == "gpu" else "KIND_CPU"
    return "\n".join(
        [
            f"# stream-guard bundle {metadata.name} ({metadata.family}): `python -m export triton`",
            f"name: {_pbtxt_string(name)}",
            'backend: "onnxruntime"',
            f"max_batch_size: {opts.max_batch}",
            "input [\n" + _tensor_block(audio) + "\n]",
            "output [\n" + ",\n".join(_tensor_block(o) for o in outputs) + "\n]",
            f"dynamic_batching {{ max_queue_delay_microseconds: {opts.max_queue_delay_us} }}",
            f"instance_group [ {{ count: {opts.instances} kind: {kind} }} ]",
            "parameters {",
            f"  key: {_pbtxt_string(METADATA_KEY)}",
            f"  value {{ string_value: {_pbtxt_string(metadata_json(metadata))} }}",
            "}",
            "",
        ]
    )


def bundle_map_rows(path: Path, metadata: BundleMetadata) -> int | None:
    """Rows of the bundle's ``anomaly_map`` (fixed in the graph), or None for a time track."""
    if metadata.map_axes.kind != "time_frequency":
        return None
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    shape = {o.name: o.shape for o in session.get_outputs()}["anomaly_map"]
    rows = shape[1] if len(shape) == 3 else None
    if not isinstance(rows, int):
        if metadata.map_axes.freq_hz:
            return len(metadata.map_axes.freq_hz)
        raise TritonExportError(f"{path}: the anomaly map's row count is not fixed in the graph ({shape})")
    return rows


def export_repository(bundle: str | Path, repo: str | Path, opts: RepositoryOptions | None = None) -> Path:
    """Write the model repository entry for ``bundle`` under ``repo``; returns the model directory.

    An existing entry of the same name is replaced whole (written beside it, then swapped), so a server
    polling the repository never sees a half-written model.
    """
    opts = opts or RepositoryOptions()
    opts.check()
    src = Path(bundle).expanduser()
    if src.suffix.lower() == ".json":
        raise TritonExportError(
            f"{src}: a fusion file runs two bundles and a logistic regression, which a Triton ONNX model "
            "cannot express; serve it with `python -m stream_guard.backends.kserve_server --model "
            f"{src}`, or export each member bundle"
        )
    meta = read_metadata(src)  # BundleError for a missing file or a file that is not a bundle
    name = opts.name or meta.name
    if not MODEL_NAME_PATTERN.match(name):
        raise TritonExportError(f"{name!r} is not a Triton model name (letters, digits, '.', '_', '-')")
    config = render_config(name, meta, bundle_map_rows(src, meta), opts)
    root = Path(repo).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    tmp = root / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "1").mkdir(parents=True)
    shutil.copyfile(src, tmp / "1" / MODEL_FILE)
    (tmp / "config.pbtxt").write_text(config)
    old = root / f".{name}.old"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
    return final


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export triton", description=__doc__.split("\n\n")[0].split(": ", 1)[-1]
    )
    p.add_argument("bundle", help="the bundle (.onnx) to serve")
    p.add_argument("--repo", required=True, help="model repository directory (created if missing)")
    p.add_argument("--name", default=None, help="model name on the server (default: the bundle's name)")
    p.add_argument("--max-batch", type=int, default=32, help="Triton max_batch_size (default 32)")
    p.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=1000,
        help="how long the dynamic batcher may hold a request to merge it with others (default 1000)",
    )
    p.add_argument("--instances", type=int, default=1, help="model instances (default 1)")
    p.add_argument("--kind", choices=INSTANCE_KINDS, default="cpu", help="instance kind (default cpu)")
    args = p.parse_args(argv)
    opts = RepositoryOptions(args.name, args.max_batch, args.max_queue_delay_us, args.instances, args.kind)
    try:
        out = export_repository(args.bundle, args.repo, opts)
    except (TritonExportError, BundleError, OSError) as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"model_dir": str(out), "name": out.name, "url": f"grpc://HOST:8001/{out.name}"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
