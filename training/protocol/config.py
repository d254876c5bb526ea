"""Configuration of a leave-one-out protocol run (one YAML file, copied into the run folder).

Per-fold training is the supervised trainer's configuration (``supervised``: a YAML path, relative to this
file or absolute) with the fold's exclusions added; keep its ``train.steps`` small (a few minutes on two
cores) because it runs once per fold.

One-class models are bundles scored as they are, several per run (``oneclass_bundles``: a mapping from the row
name in every table to a bundle path, ``null`` for the embedded one-class bundle ``default.onnx``, in table
order), so a baseline and variants are rows measured on the same folds, windows and thresholds. The fusion
combines one of them (``fusion_oneclass``; by default the one named ``oneclass``, else the embedded default,
else the last) with the supervised model. The older single-bundle key ``oneclass_bundle`` still works and
means ``{oneclass: <path>}`` (``""``: no one-class model and no fusion).

A row whose path contains ``{source}`` is a bundle per source fold (one-class models retrained without that
source, e.g. ``runs/loo-final/oneclass-folds/{source}.onnx``): a source fold S scores the bundle at the path
with S filled in, so the fold's false alarms are left-out ones for that row; a family fold scores the embedded
default, because a one-class model never trains on synthetic speech, so leaving a family out changes nothing
for it. A source fold whose bundle does not exist yet is scored without that row (a rerun adds it).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from training.oneclass.config import ConfigError

__all__ = ["ConfigError", "ProtocolConfig", "load_protocol_config"]

RESERVED = ("supervised", "fusion")
SOURCE_FIELD = "{source}"  # the placeholder of a per-source-fold bundle path


def is_template(bundle: str | None) -> bool:
    """Whether a one-class row's bundle path names a bundle per source fold."""
    return bundle is not None and SOURCE_FIELD in bundle


def fold_bundle(bundle: str | None, kind: str, held_out: str) -> str | None:
    """The bundle a row scores in one fold: the path as given, or for a templated row the held-out source's
    bundle in a source fold and the embedded default (None) in a family fold."""
    if not is_template(bundle):
        return bundle
    assert bundle is not None
    return bundle.replace(SOURCE_FIELD, held_out) if kind == "source" else None


@dataclass
class ProtocolConfig:
    name: str = "loo"
    manifest: str = "~/.cache/stream-guard/corpus/full/manifest.csv"
    supervised: str = "../../supervised/configs/fold.yaml"
    # One-class model: a bundle scored as it is. It never trains on synthetic speech, so its family folds are
    # honest as they are; its source folds are honest only for sources it was not trained on (the report says
    # which). None = the bundle embedded in stream_guard; "" = no one-class model (and no fusion).
    oneclass_bundle: str | None = None
    oneclass_bundles: dict[str, str | None] | None = None  # row name -> bundle path (None = embedded default)
    fusion_oneclass: str | None = None  # the entry of oneclass_bundles fused with the supervised model
    channels: list[str] = field(default_factory=lambda: ["wideband", "telephone"])
    source_folds: list[str] | str = "auto"  # real sources to leave out ("auto" = every real source)
    family_folds: list[str] | str = "auto"  # synthesizer families to leave out ("auto" = every family)
    eval_split: str = "eval"  # real clips the family folds are reported on
    max_report_clips: int = 300  # per class, channel and fold (a deterministic, group-spread subset)
    hop_s: float = 1.0
    threshold_quantile: float = 0.95
    n_boot: int = 200
    threads: int = 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def bundles(self) -> dict[str, str | None]:
        """Row name -> bundle path (None = the embedded default), in table order."""
        if self.oneclass_bundles is not None:
            return dict(self.oneclass_bundles)
        if self.oneclass_bundle == "":
            return {}
        return {"oneclass": self.oneclass_bundle}

    def fusion_partner(self) -> str | None:
        """The one-class row fused with the supervised model (None: no one-class model, no fusion)."""
        bundles = self.bundles()
        if not bundles:
            return None
        if self.fusion_oneclass is not None:
            return self.fusion_oneclass
        if "oneclass" in bundles:
            return "oneclass"
        embedded = [k for k, v in bundles.items() if v is None]
        return embedded[0] if embedded else list(bundles)[-1]

    def detectors(self) -> list[str]:
        """Every row of the tables, in order: the one-class bundles, the supervised model, the fusion."""
        return [*self.bundles(), "supervised", *(["fusion"] if self.fusion_partner() else [])]


def load_protocol_config(path: str | Path, need_supervised: bool = True) -> tuple[ProtocolConfig, Path]:
    """The config and the resolved path of its supervised base config (checked only if ``need_supervised``:
    rewriting a report needs no training config)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping")
    known = {f.name for f in fields(ProtocolConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        cfg = ProtocolConfig(**raw)
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for key in ("source_folds", "family_folds"):
        value = getattr(cfg, key)
        if isinstance(value, str) and value != "auto":
            raise ConfigError(f"{path}: {key} must be 'auto' or a list")
    if not cfg.channels:
        raise ConfigError(f"{path}: channels must name at least one channel")
    if cfg.oneclass_bundles is not None:
        if cfg.oneclass_bundle is not None:
            raise ConfigError(f"{path}: give oneclass_bundles or oneclass_bundle, not both")
        if not isinstance(cfg.oneclass_bundles, dict) or not cfg.oneclass_bundles:
            raise ConfigError(
                f"{path}: oneclass_bundles must map row names to bundle paths (null = embedded)"
            )
        for name, bundle in cfg.oneclass_bundles.items():
            if not isinstance(name, str) or not name or name in RESERVED:
                raise ConfigError(
                    f"{path}: oneclass_bundles: {name!r} is not a usable row name ({RESERVED} are taken)"
                )
            if bundle is not None and (not isinstance(bundle, str) or not bundle):
                raise ConfigError(
                    f"{path}: oneclass_bundles: {name!r} needs a bundle path or null (embedded)"
                )
            if bundle is not None and re.search(r"\{(?!source\})[^}]*\}", bundle):
                raise ConfigError(
                    f"{path}: oneclass_bundles: {name!r}: {bundle!r}: the only placeholder a bundle path may "
                    f"hold is {SOURCE_FIELD} (the left-out source of a source fold)"
                )
    if cfg.fusion_oneclass is not None and cfg.fusion_oneclass not in cfg.bundles():
        raise ConfigError(
            f"{path}: fusion_oneclass {cfg.fusion_oneclass!r} is not one of the one-class rows "
            f"{list(cfg.bundles())}"
        )
    sup = Path(cfg.supervised).expanduser()
    if not sup.is_absolute():
        sup = (path.parent / sup).resolve()
    if need_supervised and not sup.is_file():
        raise ConfigError(f"{path}: supervised base config {sup} not found")
    return cfg, sup


def save_protocol_config(cfg: ProtocolConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
