"""Which clips a supervised fold trains, selects and calibrates on, and class-balanced training crops.

Reuses the one-class manifest reader (:func:`training.oneclass.data.read_manifest`), audio cache and crop
sampler, and adds what a two-class detector needs:

- spoof clips split by *family* (leave-one-family-out) with a stable per-clip dev holdout
  (:class:`~training.supervised.config.SupDataConfig` explains why);
- resyntheses of real clips in the reported split kept out of training (their parent recording is reported);
- a sampler that balances the classes (half of every batch each) and, within a class, the groups (real
  sources, synthesizer systems), so a large source or a prolific synthesizer does not define its class alone;
- loading that drops an unreadable or empty clip with a named warning, and names a source whose clips are all
  unusable, instead of failing an hour into a run.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.oneclass.data import (
    AudioCache,
    Clip,
    CropSampler,
    DataError,
    read_manifest,
    require,
    select,
    stable_fraction,
    subsample,
)

from .config import SupRunConfig

__all__ = [
    "BalancedSampler",
    "FoldData",
    "clip_key",
    "is_spoof_dev",
    "load_clips",
    "parent_splits",
    "select_fold",
]


def clip_key(c: Clip) -> str:
    """Identity of a recording across its channel copies (``<system>|<clip id>``)."""
    return f"{c.system}|{c.path.stem}"


def is_spoof_dev(c: Clip, fraction: float) -> bool:
    """Whether a synthetic clip belongs to the dev holdout of its system (stable, channel-independent)."""
    return stable_fraction("spoof-dev|" + clip_key(c)) < fraction


def parent_splits(manifest: str | Path) -> dict[Path, str]:
    """``{path of a resynthesis: split of the real clip it was made from}`` (empty without a ``parent``
    column)."""
    manifest = Path(manifest).expanduser()
    by_id: dict[str, str] = {}
    children: list[tuple[str, str]] = []
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if "parent" not in (reader.fieldnames or []):
            return {}
        for row in reader:
            cid = (row.get("clip_id") or "").strip()
            if cid and (row.get("label") or "").strip().lower() in ("bonafide", "real"):
                by_id[cid] = (row.get("split") or "").strip()
            parent = (row.get("parent") or "").strip()
            if parent:
                children.append(((row.get("path") or "").strip(), parent))
    out = {}
    for path, parent in children:
        p = Path(path)
        if not p.is_absolute():
            p = manifest.parent / p
        out[p] = by_id.get(parent, "")
    return out


@dataclass
class FoldData:
    """The clips of one training run, and what was left out or dropped on the way (for the report)."""

    train_real: list[Clip]
    train_spoof: list[Clip]
    dev_real: list[Clip]
    dev_spoof: list[Clip]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("train_real", "train_spoof", "dev_real", "dev_spoof")}


def _cap_groups(clips: list[Clip], limit: int | None, key: Callable[[Clip], str], tag: str) -> list[Clip]:
    groups: dict[str, list[Clip]] = defaultdict(list)
    for c in clips:
        groups[key(c)].append(c)
    out: list[Clip] = []
    for name in sorted(groups):
        out.extend(subsample(groups[name], limit, key=f"{tag}|{name}"))
    return out


def select_fold(cfg: SupRunConfig, clips: list[Clip] | None = None) -> FoldData:
    """Apply the run's splits and exclusions; a missing class or an unknown exclusion is a named DataError."""
    d = cfg.data
    manifest = cfg.manifest_path
    clips = read_manifest(manifest) if clips is None else clips
    sources = {c.source for c in clips if c.is_real}
    families = {c.family for c in clips if not c.is_real}
    for s in d.exclude_sources or []:
        if s not in sources:
            raise DataError(
                f"{manifest}: real source {s!r} to leave out is not in the manifest ({sorted(sources)})"
            )
    for f in d.exclude_families or []:
        if f not in families:
            raise DataError(
                f"{manifest}: spoof family {f!r} to leave out is not in the manifest ({sorted(families)})"
            )
    notes: list[str] = []
    train_real = require(
        select(clips, d.train_split, "real", d.channels, exclude_sources=d.exclude_sources),
        f"split {d.train_split!r}, label real"
        + (f" without sources {d.exclude_sources}" if d.exclude_sources else ""),
        manifest,
    )
    dev_real = require(
        select(clips, d.dev_split, "real", d.channels, exclude_sources=d.exclude_sources),
        f"split {d.dev_split!r}, label real"
        + (f" without sources {d.exclude_sources}" if d.exclude_sources else ""),
        manifest,
    )
    excluded_fam = set(d.exclude_families or [])
    spoof = [c for c in select(clips, None, "spoof", d.channels) if c.family not in excluded_fam]
    parents = parent_splits(manifest)
    if d.exclude_resyntheses_of and parents:
        kept = [c for c in spoof if parents.get(c.path, "") not in d.exclude_resyntheses_of]
        if len(kept) < len(spoof):
            notes.append(
                f"{len(spoof) - len(kept)} resyntheses of {'/'.join(d.exclude_resyntheses_of)} real clips "
                "kept out of training and dev"
            )
        spoof = kept
    what = "label spoof" + (f" without families {sorted(excluded_fam)}" if excluded_fam else "")
    require(spoof, what, manifest)
    train_spoof = require(
        [c for c in spoof if not is_spoof_dev(c, d.spoof_dev_fraction)], what + " (training part)", manifest
    )
    dev_spoof = require(
        [c for c in spoof if is_spoof_dev(c, d.spoof_dev_fraction)], what + " (dev holdout)", manifest
    )
    return FoldData(
        train_real=_cap_groups(train_real, d.max_train_clips_per_group, lambda c: c.source, "train-real"),
        train_spoof=_cap_groups(train_spoof, d.max_train_clips_per_group, lambda c: c.system, "train-spoof"),
        dev_real=subsample(dev_real, d.max_dev_clips, key="dev-real"),
        dev_spoof=subsample(dev_spoof, d.max_dev_clips, key="dev-spoof"),
        notes=notes,
    )


def load_clips(
    clips: list[Clip], cache: AudioCache, what: str, group: Callable[[Clip], str],
    warn: Callable[[str], None] = print,
) -> list[Clip]:  # fmt: skip
    """Decode ``clips`` into ``cache`` now; drop unreadable or empty ones with a warning naming the file, and
    name any group (source or system) that has no usable clip left. Raises DataError when nothing is left."""
    ok: list[Clip] = []
    bad_by_group: dict[str, int] = defaultdict(int)
    total_by_group: dict[str, int] = defaultdict(int)
    for c in clips:
        total_by_group[group(c)] += 1
        try:
            x = cache.get(c)
        except DataError as exc:
            warn(f"skipping unusable clip: {exc}")
            bad_by_group[group(c)] += 1
            continue
        if not np.any(np.abs(x) > 1e-4):
            warn(f"skipping {c.path}: no signal above -80 dBFS (no usable speech)")
            bad_by_group[group(c)] += 1
            continue
        ok.append(c)
    for g, n in bad_by_group.items():
        if n == total_by_group[g]:
            warn(f"{what}: source/system {g!r} has no usable speech in any of its {n} clips; it is left out")
    if not ok:
        raise DataError(f"{what}: no usable clip at all (every file was unreadable or silent)")
    return ok


class BalancedSampler:
    """Training crops drawn group-uniformly within one class, reproducible from ``(seed, index)``.

    Each group (a real source or a synthesizer system) has its own :class:`CropSampler`, so a short clip is
    continued with audio of the same speaker and chain, never padded with digital silence.
    """

    def __init__(
        self, clips: list[Clip], cache: AudioCache, crop_samples: int, seed: int,
        group: Callable[[Clip], str], stream: int,
    ) -> None:  # fmt: skip
        groups: dict[str, list[Clip]] = defaultdict(list)
        for c in clips:
            groups[group(c)].append(c)
        if not groups:
            raise DataError("no training clips")
        self.names = sorted(groups)
        self.samplers = {
            g: CropSampler(groups[g], cache, crop_samples, seed * 1000 + stream * 100 + i)
            for i, g in enumerate(self.names)
        }
        self.seed = seed
        self.stream = stream

    def crop_at(self, index: int) -> tuple[np.ndarray, np.random.Generator]:
        pick = np.random.default_rng([self.seed, self.stream, index, 7])
        g = self.names[int(pick.integers(len(self.names)))]
        return self.samplers[g].crop_at(self.stream, index)
