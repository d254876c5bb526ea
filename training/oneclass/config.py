"""Run configuration of the one-class trainer: one YAML file per run, copied into the run folder.

Unknown keys are an error (a typo must not silently fall back to a default), and every path may use ``~``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .model import POOLINGS, ModelConfig


class ConfigError(ValueError):
    """A config file is missing, unreadable or has unknown or malformed keys; the message names the file."""


@dataclass
class DataConfig:
    manifest: str = "~/.cache/stream-guard/corpus/full/manifest.csv"
    train_split: str = "train"
    dev_split: str = "dev"
    eval_split: str = "eval"
    channels: list[str] | None = None  # None = every channel in the manifest
    sources: list[str] | None = None  # restrict the real training sources (the baseline's narrow data)
    exclude_sources: list[str] | None = None  # leave-one-source-out
    bands: list[str] | None = None  # original recording band of real training clips (wideband / narrowband)
    crop_s: float = 2.0
    source_balance: float = 1.0  # crop sampling: source weight = clips ** source_balance (0 = sources equal)
    max_dev_clips: int = 400  # per class, for checkpoint selection
    max_eval_clips: int | None = None  # per class, for the final report (None = all)


@dataclass
class AugmentConfig:
    """The run's augmentation (:mod:`training.augment.presets`); the supervised trainer reads it too.

    ``preset`` names a chain (``full`` or ``compact``), ``overrides`` changes probabilities and ranges per
    augmentation, ``augmentations`` replaces the preset by an explicit chain. ``seed`` None draws the
    augmentation from each crop's generator (how the shipped models were trained); an integer gives the
    augmentation its own stream with the crops unchanged. ``params`` is the older form, still read.
    """

    enabled: bool = True
    preset: str = "full"
    seed: int | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    augmentations: list[dict[str, Any]] | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    seed: int = 0
    epochs: int = 5
    crops_per_epoch: int = 7168
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    checkpoint_every: int = 50  # steps between resumable checkpoints
    threads: int = 2
    select_scorer: str = "ds_topk"  # which scorer's dev EER picks the checkpoint
    max_minutes: float | None = None  # wall-clock budget: no new epoch starts if it would not finish in time


@dataclass
class ScoringConfig:
    window_s: float = 2.0
    hop_s: float = 1.0  # evaluation hop between windows of a clip
    runtime_hop_s: float = 0.5  # recommended hop written into the bundle
    min_audio_s: float = 0.5
    threshold_quantile: float = 0.95
    batch_size: int = 16


@dataclass
class RunConfig:
    name: str = "oneclass"
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def manifest_path(self) -> Path:
        return Path(self.data.manifest).expanduser()


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**raw)


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> RunConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a mapping")
    sections = {
        "data": DataConfig,
        "augment": AugmentConfig,
        "model": ModelConfig,
        "train": TrainConfig,
        "scoring": ScoringConfig,
    }
    unknown = sorted(set(raw) - set(sections) - {"name"})
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}")
    try:
        cfg = RunConfig(
            name=str(raw.get("name", "oneclass")),
            **{k: _build(cls, raw.get(k), f"{source}: {k}") for k, cls in sections.items()},
        )
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if cfg.model.pooling not in POOLINGS:
        raise ConfigError(f"{source}: model.pooling must be one of {POOLINGS}")
    if cfg.scoring.min_audio_s > cfg.scoring.window_s:
        raise ConfigError(f"{source}: scoring.min_audio_s exceeds scoring.window_s")
    check_augment(cfg.augment, source)
    return cfg


def check_augment(section: AugmentConfig, source: str) -> None:
    """A bad ``augment`` section is a :class:`ConfigError` naming the file, raised when the config loads."""
    from training.augment import AugmentConfigError, check_section

    try:
        check_section(section)
    except AugmentConfigError as exc:
        raise ConfigError(f"{source}: augment: {exc}") from None


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return config_from_dict(raw or {}, str(path))


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
