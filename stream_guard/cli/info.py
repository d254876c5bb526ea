"""``stream-guard info [MODEL]``: what a model is, how it was calibrated and where it came from.

For a fused pair (the default model) it shows the fusion (members, weights, bias, the threshold as a logit
and as a probability) and then each member bundle in full.

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
  stream-guard info                         the default model: the fused pair, its two bundles, weights
  stream-guard info oneclass                the embedded one-class bundle alone (also: supervised)
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
        help="a bundle (.onnx), a fusion file (.fusion.json) or an embedded model: fused (the default), "
        "oneclass, supervised",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.set_defaults(handler=run)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _bundle_description(path: Path, session: Any, meta: Any, embedded: bool) -> dict[str, Any]:
    """One ONNX bundle: file, graph signature and metadata, JSON-ready."""
    data = asdict(meta)
    data["map_axes"]["freq_hz"] = list(meta.map_axes.freq_hz)
    data["calibration"]["threshold_probability"] = meta.calibration.threshold_probability
    return {
        "path": str(path),
        "embedded": embedded,
        "size_bytes": Path(path).stat().st_size,
        "sha256": _sha256(Path(path)),
        "producer": session.get_modelmeta().producer_name,
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


def _is_embedded(path: Path) -> bool:
    from stream_guard.bundle import default_model_path

    return path.resolve().parent == default_model_path().resolve().parent


def describe_fusion(model: str | None) -> dict[str, Any]:
    """A fused pair (two bundles and the logistic regression over their scores): the pair's combined
    metadata, the fusion itself (weights, bias, threshold) and a full description of each member bundle."""
    from stream_guard.backends import BackendError, FusedBackend
    from stream_guard.bundle import BundleError

    try:
        backend = FusedBackend(model, provider="cpu")
    except (BundleError, BackendError) as exc:
        raise UserError(str(exc)) from None
    try:
        data = asdict(backend.metadata)
        data["map_axes"]["freq_hz"] = list(backend.metadata.map_axes.freq_hz)
        data["calibration"]["threshold_probability"] = backend.metadata.calibration.threshold_probability
        path = backend.path
        embedded = _is_embedded(path)
        members = []
        for m, member in zip(backend.spec.members, backend.members, strict=True):
            entry = _bundle_description(member.path, member._session, member.metadata, embedded)
            members.append({"role": m.role, "file": m.file, **entry})
        spec = backend.spec
        fusion = {
            "roles": [m.role for m in spec.members],
            "weights": list(spec.weights),
            "bias": spec.bias,
            "threshold": spec.threshold,
            "threshold_probability": backend.metadata.calibration.threshold_probability,
            "explanation": spec.explanation,
            "fitted_on": spec.fitted_on,
        }
        return {
            "path": str(path),
            "kind": "fused",
            "embedded_default": model is None or (embedded and path.name == "default.fusion.json"),
            "size_bytes": path.stat().st_size,
            "sha256": _sha256(path),
            "producer": "stream-guard fusion",
            "graph": {
                "inputs": [
                    {**i, "name": f"{mb['metadata']['name']}: {i['name']}"}
                    for mb in members
                    for i in mb["graph"]["inputs"]
                ],
                "outputs": [
                    {**o, "name": f"{mb['metadata']['name']}: {o['name']}"}
                    for mb in members
                    for o in mb["graph"]["outputs"]
                ],
            },
            "fusion": fusion,
            "members": members,
            "metadata": data,
        }
    finally:
        backend.close()


def describe(model: str | None) -> dict[str, Any]:
    """Everything ``info`` reports about a model, as a JSON-ready dict (raises UserError for a bad file).

    ``None`` is the default model, the embedded fused pair; short names (``oneclass``, ``supervised``) name
    the embedded bundles.
    """
    import onnxruntime as ort

    from stream_guard.bundle import BundleError, is_fusion_file, metadata_from_session, resolve_model_path

    try:
        path = resolve_model_path(model)
    except BundleError as exc:
        raise UserError(str(exc)) from None
    if is_fusion_file(path):
        return describe_fusion(model if model is None else str(path))
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
    info = _bundle_description(path, session, meta, _is_embedded(path))
    return {"kind": "bundle", "embedded_default": False, **info}


def _freq_summary(freq_hz: list[float]) -> str:
    if not freq_hz:
        return "none (time track)"
    return f"{len(freq_hz)} rows, {freq_hz[0]:.0f}-{freq_hz[-1]:.0f} Hz"


def _bundle_rows(meta: dict[str, Any], info: dict[str, Any], member: bool = False) -> list[tuple[str, str]]:
    cal = meta["calibration"]
    when = " when this bundle runs alone" if member else ""
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
        (
            "threshold",
            f"{cal['threshold']:.4g} on the raw score = P(synthetic) {cal['threshold_probability']:.3f}; "
            f"at or above it a recording is judged synthetic{when}",
        ),
        ("probability", f"1 / (1 + exp(-(score - {cal['center']:.4g}) / {cal['scale']:.4g}))"),
        ("calibrated on", cal["fitted_on"] or "-"),
        ("training", json.dumps(meta["training"], sort_keys=True) if meta["training"] else "-"),
        ("licence", meta["licence"] or "-"),
    ]
    if "members" not in info:
        rows.append(("extra", json.dumps(meta["extra"], sort_keys=True) if meta["extra"] else "-"))
    rows.append(("file", f"{info['size_bytes'] / 1e6:.2f} MB, sha256 {info['sha256'][:16]}..."))
    for graph_io in ("inputs", "outputs"):
        for item in info["graph"][graph_io]:
            rows.append((graph_io[:-1], f"{item['name']}: {item['type']} {item['shape']}"))
    return rows


def _fusion_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    f = info["fusion"]
    terms = " ".join(
        f"{'+' if w >= 0 else '-'} {abs(w):.4g} * score({role})"
        for role, w in zip(f["roles"], f["weights"], strict=True)
    )
    members = info["members"]
    rows: list[tuple[str, str]] = [
        ("family", "fused pair (score kind: logit)"),
        ("default", "yes: the model used when none is named" if info["embedded_default"] else "no"),
        (
            "members",
            "; ".join(f"{m['role']}: {m['metadata']['name']} ({m['file']})" for m in members),
        ),
        ("fused logit", f"z = {f['bias']:.4g} {terms}"),
        ("probability", "P(synthetic) = 1 / (1 + exp(-z))"),
        (
            "threshold",
            f"z >= {f['threshold']:.4g}, i.e. P(synthetic) >= {f['threshold_probability']:.3f}: a recording "
            "at or above it is judged synthetic (an operating point on real speech, not 0.5)",
        ),
        ("anomaly map", f"the {f['explanation']} member's (shown to users whatever the fused score says)"),
        ("fitted on", f["fitted_on"] or "-"),
        ("file", f"{info['size_bytes']} bytes, sha256 {info['sha256'][:16]}..."),
    ]
    return rows


def run(args: argparse.Namespace) -> int:
    info = describe(args.model)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return EXIT_OK

    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    meta = info["metadata"]
    if info["kind"] == "fused":
        table = Table(title=f"{meta['name']}  ({info['path']})", show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for key, value in _fusion_rows(info):
            table.add_row(key, value)
        console.print(table)
        for member in info["members"]:
            sub = Table(
                title=f"member '{member['role']}': {member['metadata']['name']}  ({member['path']})",
                show_header=False,
                title_justify="left",
            )
            sub.add_column(style="bold")
            sub.add_column()
            for key, value in _bundle_rows(member["metadata"], member, member=True):
                sub.add_row(key, value)
            console.print(sub)
        return EXIT_OK
    table = Table(title=f"{meta['name']}  ({info['path']})", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in _bundle_rows(meta, info):
        table.add_row(key, value)
    console.print(table)
    return EXIT_OK
