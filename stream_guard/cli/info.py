"""``stream-guard info [MODEL]``: what a bundle is, how it was calibrated and where it came from.

It reads only the bundle's own metadata and graph signature (through onnxruntime), so it answers the questions
a user has before trusting a score: which sample rate and window, what the threshold means and on what data it
was fitted, what the model was trained on, under which licence.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stream_guard.cli.common import EXIT_OK, UserError

EPILOG = """\
examples:
  stream-guard info                         the embedded default model
  stream-guard info my-model.onnx --json    machine-readable description
  stream-guard info pair.fusion.json        a fused detector pair and its two bundles
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="describe a model bundle: metadata, calibration, provenance, inputs/outputs",
        description="Describe a stream-guard model bundle: metadata, calibration, provenance, graph.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        nargs="?",
        default=None,
        metavar="MODEL",
        help="bundle path (default: the model embedded in the package)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.set_defaults(handler=run)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_fusion(model: str) -> dict[str, Any]:
    """A fusion file (two bundles and the logistic regression over their scores): its combined metadata."""
    from stream_guard.backends import BackendError, FusedBackend
    from stream_guard.bundle import BundleError

    try:
        backend = FusedBackend(model, provider="cpu")
    except (BundleError, BackendError) as exc:
        raise UserError(str(exc)) from None
    try:
        data = asdict(backend.metadata)
        data["map_axes"]["freq_hz"] = list(backend.metadata.map_axes.freq_hz)
        path = Path(model).expanduser()
        inputs, outputs = [], []
        for member in backend.members:
            session = member._session
            name = member.metadata.name
            inputs += [
                {"name": f"{name}: {i.name}", "type": i.type, "shape": list(i.shape)}
                for i in session.get_inputs()
            ]
            outputs += [
                {"name": f"{name}: {o.name}", "type": o.type, "shape": list(o.shape)}
                for o in session.get_outputs()
            ]
        return {
            "path": str(path),
            "embedded_default": False,
            "size_bytes": path.stat().st_size,
            "sha256": _sha256(path),
            "producer": "stream-guard fusion",
            "graph": {"inputs": inputs, "outputs": outputs},
            "metadata": data,
        }
    finally:
        backend.close()


def describe(model: str | None) -> dict[str, Any]:
    """Everything ``info`` reports about a bundle, as a JSON-ready dict (raises UserError for a bad file)."""
    import onnxruntime as ort

    from stream_guard.backends.fused import is_fusion_path

    if model is not None and is_fusion_path(model):
        return describe_fusion(model)

    from stream_guard.bundle import BundleError, metadata_from_session, resolve_bundle_path

    try:
        path = resolve_bundle_path(model)
    except BundleError as exc:
        raise UserError(str(exc)) from None
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several exception types for a file that is not ONNX
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: not a readable ONNX model ({first})") from None
    try:
        meta = metadata_from_session(session, str(path))
    except BundleError as exc:
        raise UserError(str(exc)) from None

    model_meta = session.get_modelmeta()
    data = asdict(meta)
    data["map_axes"]["freq_hz"] = list(meta.map_axes.freq_hz)
    return {
        "path": str(path),
        "embedded_default": model is None,
        "size_bytes": Path(path).stat().st_size,
        "sha256": _sha256(path),
        "producer": model_meta.producer_name,
        "graph": {
            "inputs": [
                {"name": i.name, "type": i.type, "shape": list(i.shape)} for i in session.get_inputs()
            ],
            "outputs": [
                {"name": o.name, "type": o.type, "shape": list(o.shape)} for o in session.get_outputs()
            ],
        },
        "metadata": data,
    }


def _freq_summary(freq_hz: list[float]) -> str:
    if not freq_hz:
        return "none (time track)"
    return f"{len(freq_hz)} rows, {freq_hz[0]:.0f}-{freq_hz[-1]:.0f} Hz"


def run(args: argparse.Namespace) -> int:
    info = describe(args.model)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return EXIT_OK

    from rich.console import Console
    from rich.table import Table

    meta = info["metadata"]
    cal = meta["calibration"]
    console = Console(highlight=False)
    table = Table(title=f"{meta['name']}  ({info['path']})", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str]] = [
        ("family", f"{meta['family']} (score kind: {meta['score_kind']})"),
        ("description", meta["description"] or "-"),
        ("sample rate", f"{meta['sample_rate']} Hz"),
        (
            "window / hop",
            f"{meta['window_s']:g} s / {meta['hop_s']:g} s (minimum audio {meta['min_audio_s']:g} s)",
        ),
        (
            "anomaly map",
            f"{meta['map_axes']['kind']}, {_freq_summary(meta['map_axes']['freq_hz'])}, "
            f"frame step {meta['map_axes']['frame_step_s']:g} s",
        ),
        ("threshold", f"{cal['threshold']:.4g} (raw score at or above it counts as synthetic)"),
        ("probability", f"1 / (1 + exp(-(score - {cal['center']:.4g}) / {cal['scale']:.4g}))"),
        ("calibrated on", cal["fitted_on"] or "-"),
        ("training", json.dumps(meta["training"], sort_keys=True) if meta["training"] else "-"),
        ("licence", meta["licence"] or "-"),
        ("extra", json.dumps(meta["extra"], sort_keys=True) if meta["extra"] else "-"),
        ("file", f"{info['size_bytes'] / 1e6:.2f} MB, sha256 {info['sha256'][:16]}..."),
    ]
    for graph_io in ("inputs", "outputs"):
        for item in info["graph"][graph_io]:
            rows.append((graph_io[:-1], f"{item['name']}: {item['type']} {item['shape']}"))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    return EXIT_OK
