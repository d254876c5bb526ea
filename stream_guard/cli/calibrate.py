"""``stream-guard calibrate``: adapt a bundle to a site's own real speech, without torch or retraining.

Discrepancy Scaling (DESIGN.md) standardises the teacher/student discrepancy with statistics of *real* speech.
Speech that is real but unlike the training data (another microphone, codec, room or language) shifts those
statistics, and a detector calibrated elsewhere then raises false alarms. ``calibrate`` refits them from a
folder of the user's real speech, using only onnx and onnxruntime:

1. The bundle's metadata (``extra.discrepancy_scaling``) names the graph tensors that hold the raw discrepancy
   vectors ``e_l`` (``[B, C_l, h_l, w_l]``) and the initializers holding ``mu_l`` and ``scale_l = 1 /
   (sigma_l + eps)`` (``[1, C_l, h_l, 1]``: pooled over time, one value per channel and frequency row). The
   graph computes ``(e_l - mu_l) * scale_l`` from them, so rewriting the initializers changes the detector
   exactly as refitting in PyTorch would.
2. Pass 1 exposes the discrepancy tensors as extra graph outputs and accumulates their mean and standard
   deviation over every window of the user's audio (windows cut as the runtime cuts them).
3. The new ``mu`` and ``scale`` replace the initializers; pass 2 scores the same windows with the updated
   graph and sets the threshold to the bundle's false-alarm quantile of those real window scores (e.g. the
   95th percentile: about 5 % of the user's real windows would be flagged). The score-to-probability mapping
   is carried over by the affine change of the real-score distribution (median and spread).
4. The result is written as a new bundle (atomically) whose metadata says what it was fitted on.

A bundle without Discrepancy Scaling gets only step 3 (a new threshold). A fused pair (the default model)
is recalibrated as a whole by :func:`calibrate_fusion`: its one-class member as above, then the fusion's
one-class weight and threshold, written as a new fusion file with its two bundles next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from stream_guard.cli.common import EXIT_OK, UserError

DS_KEY = "discrepancy_scaling"
CAL_REF_KEY = "calibration_reference"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au")
MIN_WINDOWS = 10
RECOMMENDED_WINDOWS = 120

EPILOG = """\
examples:
  stream-guard calibrate --real site-recordings/ --out site.fusion.json   refit the default (fused pair)
  stream-guard scan call.wav --model site.fusion.json                     use the calibrated pair
  stream-guard calibrate --model oneclass --real site/ --out site.onnx    the one-class bundle alone
  stream-guard calibrate --model my.onnx --real calls/ --out my-site.onnx --quantile 0.99

Give a few minutes (or more) of real speech recorded the way the monitored audio is recorded (same
microphones,
codecs, rooms). Every audio file under --real is used (wav, flac, ogg, opus, mp3, aiff).
"""


class CalibrationError(ValueError):
    """Calibration input is unusable; the message names the file or folder."""


@dataclass(frozen=True)
class CalibrationResult:
    out: Path
    files: int
    windows: int
    seconds: float
    threshold_before: float
    threshold_after: float
    ds_refitted: bool
    skipped: tuple[str, ...]
    quantile: float = 0.95


# ----------------------------------------------------------------------------------------------------------
# audio
def audio_files(root: Path) -> list[Path]:
    """Audio files under ``root`` (a file or a folder, recursively), sorted for reproducibility."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise CalibrationError(f"{root}: no such file or folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise CalibrationError(f"{root}: contains no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return files


def read_mono(path: Path, sample_rate: int) -> np.ndarray:
    """A file as float32 mono at ``sample_rate``; raises CalibrationError naming the file."""
    import soundfile as sf
    import soxr

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises several types for unreadable files
        raise CalibrationError(f"{path}: unreadable audio ({str(exc).splitlines()[0][:160]})") from None
    if data.size == 0:
        raise CalibrationError(f"{path}: contains no samples")
    x = data.mean(axis=1)
    if not np.all(np.isfinite(x)):
        raise CalibrationError(f"{path}: contains NaN or infinite samples")
    if sr != sample_rate:
        x = soxr.resample(x, sr, sample_rate, quality="HQ")
    return np.ascontiguousarray(x, dtype=np.float32)


def cut_windows(x: np.ndarray, window: int, hop: int, min_samples: int) -> Iterator[np.ndarray]:
    """Windows as the runtime cuts them: full windows every ``hop`` (plus one covering the tail); a clip
    shorter
    than a window once as it is, if it reaches ``min_samples``."""
    n = len(x)
    if n < min_samples:
        return
    if n <= window:
        yield x
        return
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] + window < n:
        starts.append(n - window)
    for s in starts:
        yield x[s : s + window]


def batches(arrays: list[np.ndarray], batch: int) -> Iterator[np.ndarray]:
    """Equal-length windows stacked into batches of at most ``batch``."""
    by_len: dict[int, list[np.ndarray]] = {}
    for a in arrays:
        by_len.setdefault(len(a), []).append(a)
    for items in by_len.values():
        for i in range(0, len(items), batch):
            yield np.stack(items[i : i + batch])


@dataclass(frozen=True)
class RealWindows:
    """The user's real speech cut into windows as the runtime cuts them."""

    windows: list[np.ndarray]
    seconds: float
    files: int
    skipped: tuple[str, ...]


def collect_windows(real: str | Path, meta: Any, progress: Any = None) -> RealWindows:
    """Every usable window of the audio under ``real`` for a model with metadata ``meta``; files that cannot
    be read are skipped (and listed), too little audio overall is a CalibrationError naming the folder."""
    sr = meta.sample_rate
    windows: list[np.ndarray] = []
    skipped: list[str] = []
    seconds = 0.0
    used = 0
    for f in audio_files(Path(real).expanduser()):
        try:
            x = read_mono(f, sr)
        except CalibrationError as exc:
            skipped.append(str(exc))
            continue
        w = list(cut_windows(x, meta.window_samples, meta.hop_samples, meta.min_samples))
        if not w:
            skipped.append(f"{f}: shorter than {meta.min_audio_s} s")
            continue
        windows.extend(w)
        seconds += len(x) / sr
        used += 1
        if progress is not None:
            progress(f)
    if len(windows) < MIN_WINDOWS:
        raise CalibrationError(
            f"{real}: only {len(windows)} usable windows ({seconds:.0f} s of audio from {used} files); "
            f"calibration needs at least {MIN_WINDOWS} (a few minutes of speech is recommended)"
        )
    return RealWindows(windows, seconds, used, tuple(skipped))


# ----------------------------------------------------------------------------------------------------------
# graph
def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise UserError(
            "calibrate needs the 'onnx' package to rewrite the bundle: pip install onnx"
        ) from None
    return onnx


def session_from_model(model: Any) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def with_outputs(model: Any, names: list[str]) -> Any:
    """A copy of ``model`` with the named intermediate tensors added as graph outputs."""
    onnx = _onnx()
    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = {o.name for o in m.graph.output}
    for name in names:
        if name not in present:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return m


def set_initializer(model: Any, name: str, value: np.ndarray) -> None:
    onnx = _onnx()
    for i, init in enumerate(model.graph.initializer):
        if init.name == name:
            old = onnx.numpy_helper.to_array(init)
            if old.shape != value.shape:
                raise CalibrationError(f"initializer {name}: shape {value.shape} does not match {old.shape}")
            model.graph.initializer[i].CopyFrom(onnx.numpy_helper.from_array(value.astype(old.dtype), name))
            return
    raise CalibrationError(f"the bundle has no initializer {name!r} (is it a stream-guard STFPM bundle?)")


def set_metadata(model: Any, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = key, value


def save_model_atomic(model: Any, path: Path) -> None:
    onnx = _onnx()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        onnx.save_model(model, str(tmp), save_as_external_data=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------------------------------------------
# core
def ds_statistics(session: Any, names: list[str], windows: list[np.ndarray], batch: int) -> tuple[list, list]:
    """Mean and standard deviation of each discrepancy tensor over batch and time: ``[1, C, h, 1]`` each."""
    n = [0.0] * len(names)
    s1: list[np.ndarray | None] = [None] * len(names)
    s2: list[np.ndarray | None] = [None] * len(names)
    for x in batches(windows, batch):
        outs = session.run(names, {"audio": x})
        for i, e in enumerate(outs):
            e = e.astype(np.float64)
            a = e.sum(axis=(0, 3), keepdims=True)
            b = (e * e).sum(axis=(0, 3), keepdims=True)
            s1[i] = a if s1[i] is None else s1[i] + a
            s2[i] = b if s2[i] is None else s2[i] + b
            n[i] += e.shape[0] * e.shape[3]
    mus, sigmas = [], []
    for k, a, b in zip(n, s1, s2, strict=True):
        mu = a / k
        var = np.maximum((b - k * mu * mu) / max(k - 1, 1), 0.0)
        mus.append(mu.astype(np.float32))
        sigmas.append(np.sqrt(var).astype(np.float32))
    return mus, sigmas


def window_scores(session: Any, windows: list[np.ndarray], batch: int) -> np.ndarray:
    out = [session.run(["score"], {"audio": x})[0] for x in batches(windows, batch)]
    return np.concatenate(out).astype(np.float64)


def calibrate_bundle(
    model_path: str | Path | None,
    real: str | Path,
    out: str | Path,
    quantile: float | None = None,
    batch: int = 16,
    progress: Any = None,
) -> CalibrationResult:
    """Refit DS statistics (if the bundle has DS) and the threshold on the real speech under ``real``.

    ``model_path`` None is the one-class member of the default model (``default_bundle_path()``, the only
    embedded bundle with Discrepancy Scaling); :func:`calibrate_fusion` recalibrates the whole default pair.
    """
    from stream_guard.bundle import (
        BundleError,
        BundleMetadata,
        Calibration,
        default_bundle_path,
        read_metadata,
        resolve_bundle_path,
    )

    onnx = _onnx()
    try:
        src = resolve_bundle_path(default_bundle_path() if model_path is None else model_path)
        meta = read_metadata(src)
    except BundleError as exc:
        raise CalibrationError(str(exc)) from None
    out = Path(out).expanduser()
    if out.resolve() == src.resolve():
        raise CalibrationError(f"{out}: --out must differ from the input bundle (write a new file)")
    ds = dict(meta.extra.get(DS_KEY) or {})
    ref = dict(meta.extra.get(CAL_REF_KEY) or {})
    q = float(quantile if quantile is not None else ref.get("quantile", 0.95))
    if not 0.5 <= q < 1.0:
        raise CalibrationError(f"--quantile {q} must be in [0.5, 1)")

    real_windows = collect_windows(real, meta, progress)
    windows, seconds, used, skipped = (
        real_windows.windows, real_windows.seconds, real_windows.files, list(real_windows.skipped)
    )  # fmt: skip

    model = onnx.load_model(str(src), load_external_data=False)
    refit = bool(ds.get("enabled")) and bool(ds.get("discrepancy_tensors"))
    if refit:
        names = list(ds["discrepancy_tensors"])
        mus, sigmas = ds_statistics(session_from_model(with_outputs(model, names)), names, windows, batch)
        eps = float(ds.get("eps", 0.05))
        for name, mu in zip(ds["mu_initializers"], mus, strict=True):
            set_initializer(model, name, mu)
        for name, sigma in zip(ds["scale_initializers"], sigmas, strict=True):
            set_initializer(model, name, (1.0 / (sigma + eps)).astype(np.float32))
    scores = window_scores(session_from_model(model), windows, batch)
    threshold = float(np.quantile(scores, q))
    median = float(np.median(scores))
    spread = float(np.quantile(scores, 0.9) - np.quantile(scores, 0.1)) or 1.0
    old = meta.calibration
    if "median" in ref and "spread" in ref and float(ref["spread"]) > 0:
        ratio = spread / float(ref["spread"])
        center = median + (old.center - float(ref["median"])) * ratio
        scale = old.scale * ratio
    else:
        center, scale = threshold, max(spread / 4.0, 1e-6)
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    fitted_on = (
        f"{len(windows)} windows ({seconds / 60:.1f} min) of real speech from {used} files "
        f"under {Path(real).name}/ "
        f"(stream-guard calibrate, {stamp}); threshold = {100 * q:g}th percentile of those window scores"
    )
    extra = dict(meta.extra)
    if refit:
        extra[DS_KEY] = {**ds, "fitted_on": fitted_on}
    extra[CAL_REF_KEY] = {**ref, "quantile": q, "median": median, "spread": spread}
    new_meta: BundleMetadata = replace(
        meta,
        calibration=Calibration(threshold=threshold, center=center, scale=scale, fitted_on=fitted_on),
        extra=extra,
    )
    set_metadata(model, "stream_guard", new_meta.to_json())
    save_model_atomic(model, out)
    read_metadata(out)  # the result must load as a valid bundle
    return CalibrationResult(
        out=out,
        files=used,
        windows=len(windows),
        seconds=seconds,
        threshold_before=old.threshold,
        threshold_after=threshold,
        ds_refitted=refit,
        skipped=tuple(skipped),
        quantile=q,
    )


@dataclass(frozen=True)
class FusionCalibrationResult:
    """What recalibrating a fused pair wrote: a fusion file and its members, and what changed."""

    out: Path
    members: dict[str, Path]
    oneclass: CalibrationResult
    windows: int
    seconds: float
    files: int
    threshold_before: float
    threshold_after: float
    threshold_probability_after: float
    weights_before: tuple[float, ...]
    weights_after: tuple[float, ...]
    skipped: tuple[str, ...]


def _fusion_stem(out: Path) -> str:
    name = out.name
    for suffix in (".fusion.json", ".json"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return out.stem


def calibrate_fusion(
    model_path: str | Path | None,
    real: str | Path,
    out: str | Path,
    quantile: float | None = None,
    batch: int = 16,
    progress: Any = None,
) -> FusionCalibrationResult:
    """Recalibrate a fused pair (the default model when ``model_path`` is None) on a site's real speech.

    1. The one-class member is recalibrated exactly as a bundle alone (:func:`calibrate_bundle`: DS
       statistics and its own threshold), written next to ``out`` as ``STEM.oneclass.onnx``.
    2. The fusion weights were fitted on the old one-class score scale. ``calibrate`` already carries the
       one-class probability mapping over by the affine change of the real-score distribution (median and
       10-90 % spread); the one-class weight and the bias get the same change, so a window that was typical
       real speech before is typical real speech after. The supervised member is unchanged (it cannot be
       refitted without synthetic speech) and is copied next to ``out`` as ``STEM.supervised.onnx``.
    3. The fusion threshold becomes the ``quantile`` of the fused logits of the same real windows (the
       operating point the shipped threshold was chosen at: about 5 % of real windows above it by default).
    4. The fusion file names the new members by hash; it is written last, atomically, and loaded back.
    """
    import shutil

    from stream_guard.backends import BackendError, FusedBackend
    from stream_guard.backends.fused import FusionMember, read_fusion, sha256_file
    from stream_guard.bundle import BundleError, read_metadata, resolve_model_path

    try:
        src = resolve_model_path(model_path)
        spec = read_fusion(src)
        source = FusedBackend(src, provider="cpu")
    except (BundleError, BackendError) as exc:
        raise CalibrationError(str(exc)) from None
    audio_files(Path(real).expanduser())  # a missing or empty folder is named before anything else
    try:
        fused_meta = source.metadata
        old_threshold = spec.threshold
    finally:
        source.close()
    out = Path(out).expanduser()
    if not out.name.lower().endswith(".json"):
        raise CalibrationError(
            f"{out}: {src.name} is a fused pair (two bundles and a fusion file), so --out must name the new "
            "fusion file, e.g. --out site.fusion.json (its bundles are written next to it); to adapt only "
            "the one-class bundle use --model oneclass --out site.onnx"
        )
    if out.resolve() == src.resolve():
        raise CalibrationError(f"{out}: --out must differ from the input fusion file (write a new file)")
    roles = [m.role for m in spec.members]
    if "oneclass" not in roles:
        raise CalibrationError(
            f"{src}: this fusion has no 'oneclass' member (roles {roles}); only a one-class member can be "
            "recalibrated on real speech alone"
        )
    stem = _fusion_stem(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    oneclass_index = roles.index("oneclass")
    oneclass_src = src.parent / spec.members[oneclass_index].file
    old_ref = dict(read_metadata(oneclass_src).extra.get(CAL_REF_KEY) or {})

    # 1. the one-class member, as `calibrate` does for a bundle alone
    oneclass_out = out.parent / f"{stem}.oneclass.onnx"
    oneclass = calibrate_bundle(oneclass_src, real, oneclass_out, quantile, batch, progress)
    new_ref = dict(read_metadata(oneclass_out).extra.get(CAL_REF_KEY) or {})

    # 2. the other members are copied unchanged; the one-class weight follows its score's affine change
    paths: dict[str, Path] = {"oneclass": oneclass_out}
    members = []
    for m in spec.members:
        if m.role == "oneclass":
            members.append(FusionMember(m.role, oneclass_out.name, sha256_file(oneclass_out)))
            continue
        target = out.parent / f"{stem}.{m.role}.onnx"
        if not (target.is_file() and sha256_file(target) == m.sha256):
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            shutil.copyfile(src.parent / m.file, tmp)
            os.replace(tmp, target)
        paths[m.role] = target
        members.append(FusionMember(m.role, target.name, m.sha256))
    weights = list(spec.weights)
    bias = spec.bias
    affine: dict[str, float] = {}
    if all(float(r.get("spread", 0)) > 0 and "median" in r for r in (old_ref, new_ref)):
        ratio = float(new_ref["spread"]) / float(old_ref["spread"])  # new one-class units per old unit
        w = weights[oneclass_index]
        bias = bias + w * (float(old_ref["median"]) - float(new_ref["median"]) / ratio)
        weights[oneclass_index] = w / ratio
        affine = {
            "old_median": float(old_ref["median"]),
            "old_spread": float(old_ref["spread"]),
            "new_median": float(new_ref["median"]),
            "new_spread": float(new_ref["spread"]),
        }

    # 3. the fusion threshold on the fused logits of the user's real windows
    q = float(quantile if quantile is not None else oneclass.quantile)
    draft = replace(spec, members=tuple(members), weights=tuple(weights), bias=bias, threshold=0.0)
    draft_path = out.with_name(f".{out.name}.draft-{os.getpid()}")
    try:
        draft.write(draft_path)
        backend = FusedBackend(draft_path, provider="cpu")
        try:
            real_windows = collect_windows(real, fused_meta)
            logits = np.concatenate(
                [backend.infer(x)[0] for x in batches(real_windows.windows, batch)]
            ).astype(np.float64)
        finally:
            backend.close()
    except (BundleError, BackendError) as exc:
        raise CalibrationError(str(exc)) from None
    finally:
        draft_path.unlink(missing_ok=True)
    threshold = float(np.quantile(logits, q))
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    fitted_on = (
        f"{spec.fitted_on.rstrip('.')}. Recalibrated by stream-guard calibrate ({stamp}) on "
        f"{len(logits)} windows ({real_windows.seconds / 60:.1f} min) of real speech from "
        f"{real_windows.files} files under {Path(real).name}/: one-class DS statistics and threshold "
        f"refitted, its fusion weight and the bias carried over by the affine change of its real-score "
        f"distribution; threshold = {100 * q:g}th percentile of the fused real window logits"
    )
    final = replace(
        draft,
        name=f"{spec.name}-calibrated" if not spec.name.endswith("-calibrated") else spec.name,
        threshold=threshold,
        fitted_on=fitted_on,
        extra={
            **spec.extra,
            "calibrated_from": {"file": src.name, "sha256": sha256_file(src), "threshold": old_threshold},
            "quantile": q,
            **({"oneclass_affine": affine} if affine else {}),
        },
    )
    final.write(out)
    try:
        check = FusedBackend(out, provider="cpu")  # the result must load as a valid pair
    except (BundleError, BackendError) as exc:
        raise CalibrationError(f"{out}: the written fusion does not load ({exc})") from None
    threshold_probability = check.metadata.calibration.threshold_probability
    check.close()
    return FusionCalibrationResult(
        out=out,
        members=paths,
        oneclass=oneclass,
        windows=len(logits),
        seconds=real_windows.seconds,
        files=real_windows.files,
        threshold_before=old_threshold,
        threshold_after=threshold,
        threshold_probability_after=threshold_probability,
        weights_before=tuple(spec.weights),
        weights_after=tuple(weights),
        skipped=real_windows.skipped,
    )


# ----------------------------------------------------------------------------------------------------------
# CLI
def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="refit Discrepancy Scaling and the threshold on your own real speech (no retraining)",
        description=(
            "Adapt a bundle to your audio: refit its Discrepancy Scaling statistics and decision threshold "
            "on a folder of real speech recorded like the audio you monitor, and write a new bundle."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        metavar="MODEL",
        default=None,
        help="model to adapt: a bundle, a fusion file, or oneclass / supervised (default: the fused pair)",
    )
    parser.add_argument("--real", metavar="DIR", required=True, help="folder (or file) of real speech")
    parser.add_argument(
        "--out",
        metavar="NEW",
        required=True,
        help="where to write the result: NEW.fusion.json for a fused pair (its bundles go next to it), "
        "NEW.onnx for a bundle",
    )
    parser.add_argument(
        "--quantile",
        type=float,
        default=None,
        help="threshold = this quantile of your real window scores (default: the bundle's, e.g. 0.95)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(handler=run)


def _is_fusion(model: str | None) -> bool:
    from stream_guard.bundle import BundleError, is_fusion_file, resolve_model_path

    try:
        return is_fusion_file(resolve_model_path(model))
    except BundleError as exc:
        raise UserError(str(exc)) from None


def run_fusion(args: argparse.Namespace) -> int:
    try:
        result = calibrate_fusion(args.model, args.real, args.out, args.quantile)
    except CalibrationError as exc:
        raise UserError(str(exc)) from None
    info = {
        "out": str(result.out),
        "members": {role: str(path) for role, path in result.members.items()},
        "files": result.files,
        "windows": result.windows,
        "minutes": round(result.seconds / 60, 2),
        "ds_refitted": result.oneclass.ds_refitted,
        "oneclass_threshold_before": result.oneclass.threshold_before,
        "oneclass_threshold_after": result.oneclass.threshold_after,
        "threshold_before": result.threshold_before,
        "threshold_after": result.threshold_after,
        "threshold_probability_after": result.threshold_probability_after,
        "weights_before": list(result.weights_before),
        "weights_after": list(result.weights_after),
        "skipped": list(result.skipped),
    }
    con = _report_start(args, info, result.skipped, result.windows)
    if con is None:
        return EXIT_OK
    weights = ", ".join(
        f"{a:.4g} -> {b:.4g}" for a, b in zip(result.weights_before, result.weights_after, strict=True)
    )
    con.print(
        f"calibrated the fused pair on {result.windows} windows ({result.seconds / 60:.1f} min, "
        f"{result.files} files); one-class DS statistics "
        f"{'refitted' if result.oneclass.ds_refitted else 'not used by this bundle'}; fusion weights "
        f"{weights}; fusion threshold {result.threshold_before:.4g} -> {result.threshold_after:.4g} "
        f"(P(synthetic) {result.threshold_probability_after:.3f})\nwrote {result.out} and "
        + ", ".join(str(p) for p in result.members.values())
        + f"\nuse it with: stream-guard scan FILE --model {result.out}",
        soft_wrap=True,
    )
    return EXIT_OK


def _report_start(
    args: argparse.Namespace, info: dict[str, Any], skipped: Sequence[str], windows: int
) -> Any:
    """With ``--json``, print the result object and return None; otherwise print the skipped files and a
    short-data note to stderr and return that console for the command's closing line."""
    if args.json:
        print(json.dumps(info))
        return None
    from stream_guard.cli.common import stderr_console

    con = stderr_console()
    for s in skipped:
        con.print(f"[yellow]skipped[/] {s}", soft_wrap=True)
    if windows < RECOMMENDED_WINDOWS:
        con.print(
            f"[yellow]note:[/] only {windows} windows; a few minutes of speech gives steadier statistics"
        )
    return con


def run(args: argparse.Namespace) -> int:
    if _is_fusion(args.model):
        return run_fusion(args)
    try:
        result = calibrate_bundle(args.model, args.real, args.out, args.quantile)
    except CalibrationError as exc:
        raise UserError(str(exc)) from None
    info = {
        "out": str(result.out),
        "files": result.files,
        "windows": result.windows,
        "minutes": round(result.seconds / 60, 2),
        "ds_refitted": result.ds_refitted,
        "threshold_before": result.threshold_before,
        "threshold_after": result.threshold_after,
        "skipped": list(result.skipped),
    }
    con = _report_start(args, info, result.skipped, result.windows)
    if con is None:
        return EXIT_OK
    con.print(
        f"calibrated on {result.windows} windows ({result.seconds / 60:.1f} min, {result.files} files); "
        f"DS statistics {'refitted' if result.ds_refitted else 'not used by this bundle'}; threshold "
        f"{result.threshold_before:.4g} -> {result.threshold_after:.4g}\nwrote {result.out}"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m stream_guard.cli.calibrate``)."""
    from stream_guard.cli.common import print_error

    parser = argparse.ArgumentParser(prog="stream-guard calibrate")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["calibrate", *(argv if argv is not None else __import__("sys").argv[1:])])
    try:
        return args.handler(args)
    except UserError as exc:
        print_error(str(exc))
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
