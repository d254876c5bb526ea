"""A fused pair of detectors behind the ordinary backend interface: one-class + supervised, one score.

A *fusion file* (JSON, conventionally ``NAME.fusion.json``) names two bundles by file name (resolved next to
the fusion file) and SHA-256, and holds a logistic regression fitted on dev-split window scores of both:

    fused logit   z = bias + sum_i weights[i] * score_i
    probability   p = 1 / (1 + exp(-z))

:class:`FusedBackend` runs both bundles on the same windows and returns ``z`` as the score (``score_kind``
``"logit"``; the calibration is center 0, scale 1, so the runtime's probability is exactly ``p``) and the
anomaly map of the member named by ``explanation`` (the one-class model: its time x frequency map is what
users are shown, whatever the fused score says). Because the pair is just another
:class:`~stream_guard.backends.base.InferenceBackend`, the engine, the scheduler and every sink work
unchanged.

The hashes pin the exact bundles the weights were fitted for: a bundle swapped or recalibrated in place (e.g.
by ``stream-guard calibrate``, which changes the one-class score scale) would make the weights meaningless, so
a mismatch is refused with a message saying which file changed. Torch-free, like the rest of the runtime.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream_guard.backends.base import BackendError, check_outputs
from stream_guard.bundle import (
    FORMAT_VERSION,
    BundleError,
    BundleMetadata,
    Calibration,
    resolve_model_path,
)

FUSION_FORMAT = "stream-guard-fusion"
FUSION_VERSION = 1


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class FusionMember:
    """One bundle of the pair: its role (``oneclass`` / ``supervised``), file name and content hash."""

    role: str
    file: str
    sha256: str


@dataclass(frozen=True)
class FusionSpec:
    """The content of a fusion file."""

    name: str
    members: tuple[FusionMember, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float  # on the fused logit; a window at or above it counts as synthetic
    explanation: str = "oneclass"  # role whose anomaly map is returned
    fitted_on: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def logit(self, scores: np.ndarray) -> np.ndarray:
        """``scores [B, n_members]`` -> fused logit ``[B]`` (float64)."""
        s = np.asarray(scores, dtype=np.float64)
        return self.bias + s @ np.asarray(self.weights, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["members"] = [asdict(m) for m in self.members]
        return {"format": FUSION_FORMAT, "version": FUSION_VERSION, **d}

    def write(self, path: str | Path) -> Path:
        """Write atomically (a temporary file renamed over the target)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, raw: Any, source: str) -> FusionSpec:
        if not isinstance(raw, dict) or raw.get("format") != FUSION_FORMAT:
            raise BundleError(f'{source}: not a stream-guard fusion file (no "format": "{FUSION_FORMAT}")')
        if raw.get("version") != FUSION_VERSION:
            raise BundleError(
                f"{source}: fusion file version {raw.get('version')!r} is not supported (this stream-guard "
                f"reads version {FUSION_VERSION})"
            )
        try:
            members = tuple(
                FusionMember(str(m["role"]), str(m["file"]), str(m["sha256"])) for m in raw["members"]
            )
            spec = cls(
                name=str(raw["name"]),
                members=members,
                weights=tuple(float(w) for w in raw["weights"]),
                bias=float(raw["bias"]),
                threshold=float(raw["threshold"]),
                explanation=str(raw.get("explanation", "oneclass")),
                fitted_on=str(raw.get("fitted_on", "")),
                extra=dict(raw.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(
                f"{source}: fusion file is missing or has a malformed field ({exc!r})"
            ) from None
        if len(spec.members) < 2 or len(spec.weights) != len(spec.members):
            raise BundleError(f"{source}: a fusion needs at least two members and one weight per member")
        if not all(math.isfinite(v) for v in (*spec.weights, spec.bias, spec.threshold)):
            raise BundleError(f"{source}: fusion weights, bias and threshold must be finite numbers")
        roles = [m.role for m in spec.members]
        if spec.explanation not in roles:
            raise BundleError(f"{source}: explanation role {spec.explanation!r} is not a member ({roles})")
        return spec


def read_fusion(path: str | Path) -> FusionSpec:
    path = Path(path).expanduser()
    if not path.is_file():
        raise BundleError(f"{path}: no such fusion file")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: fusion file is not readable JSON ({exc})") from None
    return FusionSpec.from_dict(raw, str(path))


class FusedBackend:
    """Runs the bundles of a fusion file on each batch; returns the fused logit and the explanation map."""

    def __init__(
        self,
        path: str | Path | None = None,
        provider: str = "auto",
        threads: int | None = None,
        verify: bool = True,
    ) -> None:
        from stream_guard.backends.onnxruntime import OnnxRuntimeBackend

        self.path = resolve_model_path(path)
        self.spec = read_fusion(self.path)
        self.members: list[Any] = []
        try:
            for m in self.spec.members:
                file = self.path.parent / m.file
                if not file.is_file():
                    raise BundleError(
                        f"{self.path}: member bundle {m.file!r} ({m.role}) not found next to it"
                    )
                if verify and sha256_file(file) != m.sha256:
                    raise BundleError(
                        f"{self.path}: member bundle {file} ({m.role}) differs from the one the fusion was "
                        "fitted for (sha256 mismatch; was it recalibrated or replaced?). Refit the fusion: "
                        "python -m training.fusion fit"
                    )
                self.members.append(OnnxRuntimeBackend(file, provider=provider, threads=threads))
        except BaseException:
            self.close()
            raise
        metas = [b.metadata for b in self.members]
        rates = {m.sample_rate for m in metas}
        if len(rates) != 1:
            self.close()
            raise BundleError(f"{self.path}: member bundles differ in sample rate ({sorted(rates)})")
        roles = [m.role for m in self.spec.members]
        self._explain = roles.index(self.spec.explanation)
        base = metas[self._explain]
        self.metadata = BundleMetadata(
            format_version=FORMAT_VERSION,
            name=self.spec.name,
            family="fused",
            sample_rate=base.sample_rate,
            window_s=base.window_s,
            hop_s=base.hop_s,
            min_audio_s=min(max(m.min_audio_s for m in metas), base.window_s),
            map_axes=base.map_axes,
            calibration=Calibration(
                threshold=self.spec.threshold, center=0.0, scale=1.0, fitted_on=self.spec.fitted_on
            ),
            score_kind="logit",
            description=(
                "Fusion of "
                + " and ".join(f"{m.role} ({b.name})" for m, b in zip(self.spec.members, metas, strict=True))
                + f": logistic regression of their window scores; the map is the "
                f"{self.spec.explanation} model's."
            ),  # fmt: skip
            training={"fusion": self.spec.fitted_on, "members": [b.training for b in metas]},
            licence="; ".join(sorted({b.licence for b in metas if b.licence})),
            extra={"fusion": self.spec.to_dict(), "members": [asdict(b) for b in metas]},
        )

    def infer(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(audio, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise BackendError(f"{self.path}: infer expects float32 [batch, samples], got shape {x.shape}")
        outs = [b.infer(x) for b in self.members]
        scores = np.stack([s for s, _ in outs], axis=1)
        fused = self.spec.logit(scores).astype(np.float32)
        return check_outputs(x.shape[0], fused, outs[self._explain][1], str(self.path))

    @property
    def device(self) -> str:
        """Where the members run (``cpu`` or ``cuda``), for logs and benchmark reports."""
        return "+".join(sorted({getattr(b, "device", "cpu") for b in self.members})) or "cpu"

    def member_scores(self, audio: np.ndarray) -> np.ndarray:
        """Raw scores of every member ``[B, n_members]`` (for diagnostics and benchmarks)."""
        x = np.ascontiguousarray(audio, dtype=np.float32)
        return np.stack([b.infer(x)[0] for b in self.members], axis=1)

    def close(self) -> None:
        for b in self.members:
            b.close()

    def __repr__(self) -> str:
        return f"FusedBackend({str(self.path)!r}, members={[m.file for m in self.spec.members]})"
