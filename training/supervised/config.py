"""Run configuration of the supervised trainer: one YAML file per run, copied into the run folder.

The ``augment`` and ``scoring`` sections are the one-class trainer's (same meaning, same defaults), so a fused
pair is trained and scored under identical windowing and augmentation. Unknown keys are an error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from training.oneclass.config import AugmentConfig, ConfigError, ScoringConfig, check_augment

from .model import SupervisedModelConfig

__all__ = [
    "ConfigError",
    "SupDataConfig",
    "SupTrainConfig",
    "SupRunConfig",
    "load_config",
    "config_from_dict",
]


@dataclass
class SupDataConfig:
    """Which clips train, select and calibrate the model.

    Real speech follows the manifest's speaker-disjoint splits. Synthetic speech is split by *family* instead:
    the manifest puts each synthesizer wholly in dev or eval (right for a one-class model, which never
    trains on spoofs), so a supervised model trains on every family not left out, holding back a stable
    hash-chosen ``spoof_dev_fraction`` of each system's clips (by clip id, so both channel copies of a clip
    fall on the same side) for checkpoint selection and calibration. Honest numbers on unseen synthesizers
    come from the leave-one-family-out folds of :mod:`training.protocol`.
    """

    manifest: str = "~/.cache/stream-guard/corpus/full/manifest.csv"
    train_split: str = "train"
    dev_split: str = "dev"
    eval_split: str = "eval"
    channels: list[str] | None = None  # None = every channel in the manifest (trained together)
    exclude_sources: list[str] | None = None  # real sources left out of train and dev (leave-one-source-out)
    exclude_families: list[str] | None = None  # spoof families left out entirely (leave-one-family-out)
    spoof_dev_fraction: float = 0.2
    # Resyntheses (WORLD, Griffin-Lim) of real clips in the reported split are never trained on: the model
    # would otherwise have seen a transformed copy of a recording whose false alarms are reported.
    exclude_resyntheses_of: list[str] = field(default_factory=lambda: ["eval"])
    crop_s: float = 2.0
    max_train_clips_per_group: int | None = 600  # per real source / spoof system (memory and load time)
    max_dev_clips: int = 200  # per class


@dataclass
class SupTrainConfig:
    seed: int = 0
    steps: int = 600
    batch_size: int = 16  # half real, half synthetic
    lr: float = 3e-4
    weight_decay: float = 1e-4
    eval_every: int = 100  # steps between dev evaluations (checkpoint selection)
    checkpoint_every: int = 25  # steps between resumable checkpoints
    threads: int = 2
    label_smoothing: float = 0.05


@dataclass
class SupRunConfig:
    name: str = "supervised"
    data: SupDataConfig = field(default_factory=SupDataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: SupervisedModelConfig = field(default_factory=SupervisedModelConfig)
    train: SupTrainConfig = field(default_factory=SupTrainConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def manifest_path(self) -> Path:
        return Path(self.data.manifest).expanduser()


SECTIONS: dict[str, type] = {
    "data": SupDataConfig, "augment": AugmentConfig, "model": SupervisedModelConfig, "train": SupTrainConfig,
    "scoring": ScoringConfig,
}  # fmt: skip


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**raw)


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> SupRunConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a mapping")
    unknown = sorted(set(raw) - set(SECTIONS) - {"name"})
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}")
    try:
        cfg = SupRunConfig(
            name=str(raw.get("name", "supervised")),
            **{k: _build(cls, raw.get(k), f"{source}: {k}") for k, cls in SECTIONS.items()},
        )
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    t = cfg.train
    if t.batch_size < 2 or t.batch_size % 2:
        raise ConfigError(f"{source}: train.batch_size must be even and >= 2 (half real, half synthetic)")
    if t.steps < 1 or t.eval_every < 1 or t.checkpoint_every < 1:
        raise ConfigError(f"{source}: train.steps, eval_every and checkpoint_every must be >= 1")
    if not 0.0 < cfg.data.spoof_dev_fraction < 1.0:
        raise ConfigError(f"{source}: data.spoof_dev_fraction must be in (0, 1)")
    if cfg.scoring.min_audio_s > cfg.scoring.window_s:
        raise ConfigError(f"{source}: scoring.min_audio_s exceeds scoring.window_s")
    check_augment(cfg.augment, source)
    return cfg


def load_config(path: str | Path) -> SupRunConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return config_from_dict(raw or {}, str(path))


def save_config(cfg: SupRunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
