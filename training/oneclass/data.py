"""Manifest reading, clip caching, training crops and scoring windows for the one-class detector.

The corpus builder writes a CSV manifest (training/corpus/README.md) with the columns below. This module
checks it up front (missing columns, unknown labels, an empty class or split, unreadable files) and raises
:class:`DataError` with the manifest and the offending file or row named, so a long run never fails halfway.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.audio_io import AudioReadError, read_audio

REQUIRED_COLUMNS = ("path", "label", "split")
OPTIONAL_COLUMNS = (
    "system",
    "family",
    "source",
    "speaker",
    "language",
    "band",
    "channel",
    "duration",
    "licence",
)
REAL_LABELS = {"bonafide", "bona-fide", "bona_fide", "real", "genuine", "human"}
SPOOF_LABELS = {"spoof", "fake", "synthetic", "deepfake"}


class DataError(ValueError):
    """The manifest or an audio file is unusable; the message names it."""


@dataclass(frozen=True)
class Clip:
    """One manifest row. ``label`` is normalised to ``"real"`` or ``"spoof"``."""

    path: Path
    label: str
    split: str
    system: str = ""
    family: str = ""
    source: str = ""
    speaker: str = ""
    language: str = ""
    band: str = ""
    channel: str = ""
    duration: float = 0.0
    licence: str = ""

    @property
    def is_real(self) -> bool:
        return self.label == "real"

    @property
    def group(self) -> str:
        """The spoof system (or ``"real"``) for per-system tables."""
        return "real" if self.is_real else (self.system or "spoof")


def normalise_label(raw: str, where: str) -> str:
    value = raw.strip().lower()
    if value in REAL_LABELS:
        return "real"
    if value in SPOOF_LABELS:
        return "spoof"
    raise DataError(f"{where}: unknown label {raw!r} (expected one of bonafide/real or spoof/fake)")


def read_manifest(path: str | Path) -> list[Clip]:
    """Parse a manifest CSV; relative audio paths are resolved against the manifest's folder."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(
            f"{path}: manifest not found (build the corpus first: python -m training.corpus build)"
        )
    clips: list[Clip] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise DataError(f"{path}: manifest lacks the column(s) {missing}")
        for lineno, row in enumerate(reader, start=2):
            where = f"{path}:{lineno}"
            audio = Path((row.get("path") or "").strip())
            if not str(audio):
                raise DataError(f"{where}: empty path")
            if not audio.is_absolute():
                audio = path.parent / audio
            try:
                duration = float(row.get("duration") or 0.0)
            except ValueError:
                raise DataError(f"{where}: duration {row.get('duration')!r} is not a number") from None
            clips.append(
                Clip(
                    path=audio,
                    label=normalise_label(row.get("label") or "", where),
                    split=(row.get("split") or "").strip(),
                    duration=duration,
                    **{c: (row.get(c) or "").strip() for c in OPTIONAL_COLUMNS if c != "duration"},
                )
            )
    if not clips:
        raise DataError(f"{path}: manifest lists no audio")
    return clips


def select(
    clips: Iterable[Clip],
    split: str | Sequence[str] | None = None,
    label: str | None = None,
    channels: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    exclude_sources: Sequence[str] | None = None,
    bands: Sequence[str] | None = None,
) -> list[Clip]:
    """Filter clips by split(s), label, channel and source."""
    splits = {split} if isinstance(split, str) else (set(split) if split else None)
    out = []
    for c in clips:
        if splits is not None and c.split not in splits:
            continue
        if label is not None and c.label != label:
            continue
        if channels and c.channel not in channels:
            continue
        if sources and c.source not in sources:
            continue
        if exclude_sources and c.source in exclude_sources:
            continue
        if bands and c.band not in bands:
            continue
        out.append(c)
    return out


def require(clips: list[Clip], what: str, manifest: str | Path) -> list[Clip]:
    """An empty selection is a user error that names what was asked for."""
    if not clips:
        raise DataError(f"{manifest}: no clips for {what} (an empty class or split)")
    return clips


def stable_fraction(key: str) -> float:
    """A deterministic number in [0, 1) from a string (for subsetting without RNG state)."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 2**32


def subsample(clips: list[Clip], limit: int | None, key: str = "") -> list[Clip]:
    """At most ``limit`` clips, chosen deterministically and spread over groups (system/source)."""
    if limit is None or len(clips) <= limit:
        return list(clips)
    ranked = sorted(clips, key=lambda c: stable_fraction(key + str(c.path)))
    by_group: dict[str, list[Clip]] = defaultdict(list)
    for c in ranked:
        by_group[c.group + "|" + c.source].append(c)
    out: list[Clip] = []
    groups = list(by_group.values())
    i = 0
    while len(out) < limit:
        added = False
        for g in groups:
            if i < len(g):
                out.append(g[i])
                added = True
                if len(out) == limit:
                    break
        if not added:
            break
        i += 1
    return out


@dataclass
class AudioCache:
    """Decoded clips at the model rate, kept in memory as int16 to halve the footprint of float32."""

    sample_rate: int = 16000
    store: dict[Path, np.ndarray] = field(default_factory=dict)

    def get(self, clip: Clip | Path) -> np.ndarray:
        path = clip.path if isinstance(clip, Clip) else Path(clip)
        hit = self.store.get(path)
        if hit is None:
            x = load_clip(path, self.sample_rate)
            hit = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
            self.store[path] = hit
        return hit.astype(np.float32) / 32767.0


def load_clip(path: Path, sample_rate: int) -> np.ndarray:
    """A clip as float32 mono at ``sample_rate``; every failure is a :class:`DataError` naming the file."""
    try:
        x, _ = read_audio(path, sample_rate=sample_rate)
    except AudioReadError as exc:
        raise DataError(str(exc)) from None
    if x.size < 1:
        raise DataError(f"{path}: contains no samples")
    return x


def crossfade_concat(parts: list[np.ndarray], fade: int) -> np.ndarray:
    """Join clips with a short linear crossfade (no clicks, no digital silence between them)."""
    out = parts[0]
    for p in parts[1:]:
        n = min(fade, len(out), len(p))
        if n == 0:
            out = np.concatenate([out, p])
            continue
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        mid = out[-n:] * (1.0 - ramp) + p[:n] * ramp
        out = np.concatenate([out[:-n], mid, p[n:]])
    return out


class CropSampler:
    """Random fixed-length training crops, reproducible from ``(seed, epoch, index)``.

    A clip shorter than the crop is continued with other clips of the same source and speaker (crossfaded),
    so a crop is always speech-like audio of one recording chain and never padded with zeros (padding would
    teach the model that digital silence is "real").
    """

    FADE = 160  # 10 ms crossfade between continued clips

    def __init__(
        self, clips: list[Clip], cache: AudioCache, crop_samples: int, seed: int, source_balance: float = 1.0
    ) -> None:
        if not clips:
            raise DataError("no training clips")
        self.clips = clips
        self.cache = cache
        self.crop = crop_samples
        self.seed = seed
        groups: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(clips):
            groups[f"{c.source}|{c.speaker}"].append(i)
        self.partners = {i: groups[f"{c.source}|{c.speaker}"] for i, c in enumerate(clips)}
        # Source weight = (clip count) ** source_balance: 1 = every clip equally likely, 0 = every source
        # equally likely. Between the two, large sources do not drown the small ones that widen "real".
        by_source: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(clips):
            by_source[c.source].append(i)
        self.sources = sorted(by_source)
        self.source_clips = [by_source[s] for s in self.sources]
        w = np.array([len(v) ** source_balance for v in self.source_clips], dtype=np.float64)
        self.source_p = w / w.sum()

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, index])

    def crop_at(self, epoch: int, index: int) -> tuple[np.ndarray, np.random.Generator]:
        rng = self.rng(epoch, index)
        members = self.source_clips[int(rng.choice(len(self.sources), p=self.source_p))]
        i = members[int(rng.integers(len(members)))]
        parts = [self.cache.get(self.clips[i])]
        total = len(parts[0])
        partners = self.partners[i]
        while total < self.crop:
            j = partners[int(rng.integers(len(partners)))]
            nxt = self.cache.get(self.clips[j])
            parts.append(nxt)
            total += len(nxt) - min(self.FADE, total, len(nxt))  # the crossfade overlaps the two clips
        audio = crossfade_concat(parts, fade=self.FADE) if len(parts) > 1 else parts[0]
        start = int(rng.integers(0, len(audio) - self.crop + 1))
        return audio[start : start + self.crop].copy(), rng


def windows(audio: np.ndarray, window: int, hop: int, min_samples: int) -> Iterator[np.ndarray]:
    """Scoring windows over a clip, as the runtime cuts them.

    Full windows every ``hop``, plus a last full window covering the tail; a clip shorter than one window is
    scored once as it is (if at least ``min_samples``).
    """
    n = len(audio)
    if n < min_samples:
        return
    if n <= window:
        yield audio
        return
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] + window < n:
        starts.append(n - window)
    for s in starts:
        yield audio[s : s + window]
