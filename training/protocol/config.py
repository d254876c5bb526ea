"""Configuration of a leave-one-out protocol run (one YAML file, copied into the run folder).

Per-fold training is the supervised trainer's configuration (``supervised``: a YAML path, relative to this
file or absolute) with the fold's exclusions added; keep its ``train.steps`` small (a few minutes on two
cores) because it runs once per fold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from training.oneclass.config import ConfigError

__all__ = ["ConfigError", "ProtocolConfig", "load_protocol_config"]


@dataclass
class ProtocolConfig:
    name: str = "loo"
    manifest: str = "~/.cache/stream-guard/corpus/full/manifest.csv"
    supervised: str = "../../supervised/configs/fold.yaml"
    # One-class model: a bundle scored as it is. It never trains on synthetic speech, so its family folds are
    # honest as they are; its source folds are honest only for sources it was not trained on (the report says
    # which). None = the bundle embedded in stream_guard; "" = no one-class model (and no fusion).
    oneclass_bundle: str | None = None
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
    sup = Path(cfg.supervised).expanduser()
    if not sup.is_absolute():
        sup = (path.parent / sup).resolve()
    if need_supervised and not sup.is_file():
        raise ConfigError(f"{path}: supervised base config {sup} not found")
    return cfg, sup


def save_protocol_config(cfg: ProtocolConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
