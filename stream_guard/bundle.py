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
# The models embedded in the package, by short name. "fused" is THE default (the model used whenever none is
# named): the one-class STFPM bundle and the supervised companion, fused by a logistic regression (see
# stream_guard.backends.fused). The two members stay reachable alone by their short names.
EMBEDDED_MODELS: dict[str, str] = {
    "fused": "default.fusion.json",
    "oneclass": "default.onnx",
    "supervised": "supervised.onnx",
}
DEFAULT_MODEL = "fused"
DEFAULT_MODEL_ALIASES = ("default",)  # `--model default` names the default explicitly
DEFAULT_BUNDLE_NAME = EMBEDDED_MODELS["oneclass"]  # the one-class bundle file (member of the default pair)


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

    @property
    def threshold_probability(self) -> float:
        """The threshold in probability units: ``probability(threshold)``.

        The threshold is an operating point (a false-alarm quantile of real speech), not the probability
        0.5, so a clip can show P(synthetic) 0.6 and still be judged real when this value is 0.65. Every
        view that shows a probability next to a verdict shows this number too.
        """
        return self.probability(self.threshold)


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


def embedded_model_path(name: str) -> Path:
    """Path of an embedded model by short name (``fused``/``default``, ``oneclass``, ``supervised``)."""
    key = DEFAULT_MODEL if name in DEFAULT_MODEL_ALIASES else name
    if key not in EMBEDDED_MODELS:
        names = ", ".join([*DEFAULT_MODEL_ALIASES, *EMBEDDED_MODELS])
        raise BundleError(f"{name}: not an embedded model (embedded: {names})")
    return Path(str(resources.files("stream_guard.models").joinpath(EMBEDDED_MODELS[key])))


def default_model_path() -> Path:
    """The model used when none is named: the embedded fused pair (its fusion file, ``default.fusion.json``).

    This is the one notion of "the default model": every command, the :class:`~stream_guard.engine.Engine`
    and :func:`~stream_guard.backends.load_backend` resolve ``None`` through :func:`resolve_model_path`, which
    returns this path.
    """
    return embedded_model_path(DEFAULT_MODEL)


def default_bundle_path() -> Path:
    """The embedded one-class STFPM bundle (``default.onnx``), the member of the default pair whose anomaly
    map users see.

    Not the default *model* (that is :func:`default_model_path`, the fused pair); kept for code that needs
    this one ONNX file, e.g. the exporter's parity tests. Same as ``embedded_model_path("oneclass")``.
    """
    return embedded_model_path("oneclass")


def resolve_model_path(model: str | Path | None) -> Path:
    """A user's ``--model`` value as an existing file, or a BundleError naming it.

    ``None`` is the default model (the fused pair); the short names ``default``, ``fused``, ``oneclass`` and
    ``supervised`` name the embedded models (write ``./oneclass`` for a file of that name); anything else is
    a path: a bundle (``.onnx``) or a fusion file (``.json``).
    """
    if model is None:
        path = default_model_path()
    elif isinstance(model, str) and (model in EMBEDDED_MODELS or model in DEFAULT_MODEL_ALIASES):
        path = embedded_model_path(model)
    else:
        path = Path(model).expanduser()
    if not path.exists():
        raise BundleError(f"{path}: no such model file")
    if not path.is_file():
        raise BundleError(f"{path}: is not a file")
    return path


def is_fusion_file(path: str | Path) -> bool:
    """Whether a model path is a fusion file (JSON naming two bundles) rather than an ONNX bundle."""
    return str(path).lower().endswith(".json")


def resolve_bundle_path(model: str | Path | None) -> Path:
    """Like :func:`resolve_model_path`, for code that needs one ONNX bundle: a fusion file (the default
    model included) is refused with a message saying how to load it or which member to name."""
    path = resolve_model_path(model)
    if is_fusion_file(path):
        what = "the default model is" if model is None else "is"
        raise BundleError(
            f"{path}: {what} a fused pair of bundles, not a single bundle; load it with "
            "stream_guard.backends.load_backend (as every command does), or name one member "
            "(--model oneclass or --model supervised)"
        )
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
