"""Model bundles: one self-describing ONNX file per detector.

A bundle takes ``audio`` float32 ``[batch, samples]`` (mono, at ``sample_rate``) and returns ``score``
float32 ``[batch]`` (higher = more likely synthetic) and ``anomaly_map`` float32 ``[batch, freq, frames]``
(or a time track ``[batch, frames]`` for families without a frequency axis). Every preprocessing step lives
inside the graph; the JSON stored under the ``stream_guard`` key of the ONNX ``metadata_props`` says how to
use it. This module reads and validates that JSON without importing onnx or torch: onnxruntime exposes
``metadata_props`` directly.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

METADATA_KEY = "stream_guard"
FORMAT_VERSION = 1
DEFAULT_BUNDLE_NAME = "default.onnx"


class BundleError(ValueError):
    """A file is not a usable stream-guard bundle; the message names the file and the problem."""


@dataclass(frozen=True)
class Calibration:
    """Maps a raw score to a probability and a decision.

    ``probability = 1 / (1 + exp(-(score - center) / scale))``. ``threshold`` is the raw-score decision
    threshold (a window at or above it counts as synthetic). ``fitted_on`` says which data fixed these
    numbers, so a user can tell whether they match their own audio (``stream-guard calibrate`` refits them).
    """

    threshold: float
    center: float
    scale: float
    fitted_on: str = ""

    def probability(self, score: float) -> float:
        z = (score - self.center) / max(self.scale, 1e-12)
        z = max(-60.0, min(60.0, z))
        return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True)
class MapAxes:
    """Geometry of the ``anomaly_map`` output.

    ``kind`` is ``"time_frequency"`` (``[batch, freq, frames]``) or ``"time"`` (``[batch, frames]``).
    ``freq_hz`` gives the centre frequency of each row (empty for a time track); column ``j`` of a window that
    starts at ``t0`` covers ``[t0 + j * frame_step_s, t0 + (j + 1) * frame_step_s)``.
    """

    kind: str
    frame_step_s: float
    freq_hz: tuple[float, ...] = ()


@dataclass(frozen=True)
class BundleMetadata:
    """The JSON description a bundle carries (DESIGN.md, "The model bundle")."""

    format_version: int
    name: str
    family: str
    sample_rate: int
    window_s: float
    hop_s: float
    min_audio_s: float
    map_axes: MapAxes
    calibration: Calibration
    score_kind: str = "anomaly"
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    licence: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_s * self.sample_rate))

    @property
    def min_samples(self) -> int:
        return int(round(self.min_audio_s * self.sample_rate))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "<bundle>") -> BundleMetadata:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleError(f"{source}: metadata is not valid JSON ({exc})") from None
        return cls.from_dict(raw, source)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<bundle>") -> BundleMetadata:
        if not isinstance(raw, dict):
            raise BundleError(f"{source}: metadata must be a JSON object")
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"{source}: bundle format version {version!r} is not supported (this stream-guard reads "
                f"version {FORMAT_VERSION})"
            )
        try:
            axes = raw["map_axes"]
            cal = raw["calibration"]
            meta = cls(
                format_version=int(version),
                name=str(raw["name"]),
                family=str(raw["family"]),
                sample_rate=int(raw["sample_rate"]),
                window_s=float(raw["window_s"]),
                hop_s=float(raw["hop_s"]),
                min_audio_s=float(raw["min_audio_s"]),
                map_axes=MapAxes(
                    kind=str(axes["kind"]),
                    frame_step_s=float(axes["frame_step_s"]),
                    freq_hz=tuple(float(f) for f in axes.get("freq_hz", ())),
                ),
                calibration=Calibration(
                    threshold=float(cal["threshold"]),
                    center=float(cal.get("center", cal["threshold"])),
                    scale=float(cal.get("scale", 1.0)),
                    fitted_on=str(cal.get("fitted_on", "")),
                ),
                score_kind=str(raw.get("score_kind", "anomaly")),
                description=str(raw.get("description", "")),
                training=dict(raw.get("training", {})),
                licence=str(raw.get("licence", "")),
                extra=dict(raw.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{source}: metadata is missing or has a malformed field ({exc!r})") from None
        if meta.sample_rate <= 0 or meta.window_s <= 0 or meta.hop_s <= 0 or meta.min_audio_s <= 0:
            raise BundleError(f"{source}: sample_rate, window_s, hop_s and min_audio_s must be positive")
        if meta.min_audio_s > meta.window_s:
            raise BundleError(
                f"{source}: min_audio_s ({meta.min_audio_s}) exceeds window_s ({meta.window_s})"
            )
        if meta.map_axes.kind not in ("time_frequency", "time"):
            raise BundleError(f"{source}: map_axes.kind must be 'time_frequency' or 'time'")
        return meta


def default_bundle_path() -> Path:
    """Path of the bundle embedded in the package (the model used when none is named)."""
    return Path(str(resources.files("stream_guard.models").joinpath(DEFAULT_BUNDLE_NAME)))


def resolve_bundle_path(model: str | Path | None) -> Path:
    """A user's ``--model`` value (None = the embedded default) as an existing file, or a BundleError."""
    path = default_bundle_path() if model is None else Path(model).expanduser()
    if not path.exists():
        raise BundleError(f"{path}: no such model file")
    if not path.is_file():
        raise BundleError(f"{path}: is not a file")
    return path


def read_metadata(path: str | Path) -> BundleMetadata:
    """Read and validate the metadata of a bundle using onnxruntime (no onnx package needed)."""
    import onnxruntime as ort  # local import keeps `import stream_guard` light

    path = resolve_bundle_path(path)
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several exception types for a bad file
        raise BundleError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0][:200]})") from None
    return metadata_from_session(session, str(path))


def metadata_from_session(session: Any, source: str) -> BundleMetadata:
    """Validate an onnxruntime session against the bundle contract and return its metadata."""
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise BundleError(
            f"{source}: an ONNX model, but not a stream-guard bundle (no '{METADATA_KEY}' metadata; export "
            "models with `python -m export`)"
        )
    meta = BundleMetadata.from_json(props[METADATA_KEY], source)
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if "audio" not in inputs or len(inputs["audio"].shape) != 2:
        raise BundleError(f"{source}: the bundle must take one input 'audio' of shape [batch, samples]")
    missing = {"score", "anomaly_map"} - outputs
    if missing:
        raise BundleError(f"{source}: the bundle lacks the output(s) {sorted(missing)}")
    return meta
