"""Manifests and duration-bucketed batching for AntiDeepfake fine-tuning and evaluation (audio is read by
:func:`training.audio_io.read_audio`).

Formats read (detected from the file):

* the project corpus manifest (CSV ``path,label,system,...,split,duration,...``, written by the corpus
  builder): relative paths are resolved against the manifest's folder; the subset is the ``source`` column;
* AntiDeepfake's protocol CSV (``ID,Label,Duration,SampleRate,Path,Attack,...``), In-the-Wild ``meta.csv`` and
  ASVspoof 2019 LA protocol files (``ASVspoof2019.LA.cm.*.txt``), through the corpus package's readers: for
  AntiDeepfake's CSV ``$ROOT`` becomes ``data_root``, the subset is the ID prefix before the first ``-``
  (AntiDeepfake's per-database rows) and the system is ``Attack``.

Labels follow AntiDeepfake: ``real`` = 1, ``fake`` = 0; ``bonafide``/``bona-fide``/``genuine`` and
``spoof``/``synthetic`` are accepted as synonyms, anything else is an error naming the file and line."""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from training.audio_io import read_audio

REAL_LABELS = {"real", "bonafide", "bona-fide", "bona_fide", "genuine", "1"}
FAKE_LABELS = {"fake", "spoof", "synthetic", "deepfake", "0"}
SPLIT_SYNONYMS = {"valid": "dev", "validation": "dev", "val": "dev", "test": "eval", "evaluation": "eval"}


class ManifestError(ValueError):
    """A manifest cannot be used; the message names the file (and line) and the problem."""


@dataclass(frozen=True)
class Utterance:
    """One labelled file. ``label`` is 1 for real (bona fide) and 0 for fake, as in AntiDeepfake."""

    uid: str
    path: Path
    label: int
    system: str = "-"
    subset: str = ""
    split: str = ""
    speaker: str = ""
    duration: float | None = None
    channel: str = ""

    @property
    def label_name(self) -> str:
        return "real" if self.label == 1 else "fake"


def parse_label(text: str, where: str) -> int:
    value = text.strip().lower()
    if value in REAL_LABELS:
        return 1
    if value in FAKE_LABELS:
        return 0
    raise ManifestError(f"{where}: label {text!r} is neither real (bonafide) nor fake (spoof)")


def _float_or_none(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and value > 0 else None


def read_manifest(
    path: str | Path, *, data_root: str | Path | None = None, split: str | None = None
) -> list[Utterance]:
    """Read either manifest format (detected from the header); optionally keep one split only.

    ``split`` matches ``train`` / ``dev`` / ``eval`` (``valid``/``validation`` and ``test`` are synonyms).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ManifestError(f"{p}: no such manifest file")
    if p.suffix == ".txt" and "ASVspoof2019" in p.name:
        return _from_corpus_reader("asvspoof2019", p, data_root, split)
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        rows = list(reader)
    if not header:
        raise ManifestError(f"{p}: empty manifest (no header line)")
    lower = {h.lower(): h for h in header}
    items: list[Utterance] = []
    if {"id", "label", "path"} <= set(lower) and "Path" in header:
        return _from_corpus_reader("antideepfake", p, data_root, split)
    if [h.lower() for h in header] == ["file", "speaker", "label"]:
        return _from_corpus_reader("in-the-wild", p, data_root, split)
    if {"path", "label"} <= set(lower):
        col = lower
        base = Path(data_root).expanduser() if data_root is not None else p.parent
        for n, row in enumerate(rows, start=2):
            where = f"{p}:{n}"
            raw_path = row[col["path"]].strip()
            if not raw_path:
                raise ManifestError(f"{where}: empty path")
            label = parse_label(row[col["label"]], where)
            system = (row.get(col.get("system", ""), "") or "").strip() or (
                "bonafide" if label else "unknown"
            )
            items.append(
                Utterance(
                    uid=raw_path,
                    path=_resolve(raw_path, base),
                    label=label,
                    system=system,
                    subset=(row.get(col.get("source", col.get("language", "")), "") or "").strip(),
                    split=_norm_split(row.get(col.get("split", ""), "") or ""),
                    speaker=(row.get(col.get("speaker", ""), "") or "").strip(),
                    duration=_float_or_none(row.get(col.get("duration", ""))),
                    channel=(row.get(col.get("channel", ""), "") or "").strip(),
                )
            )
    else:
        raise ManifestError(
            f"{p}: unknown manifest header {header}; expected 'path,label,...' (corpus manifest) or "
            "'ID,Label,Duration,SampleRate,Path,...' (AntiDeepfake protocol)"
        )
    if split is not None:
        wanted = _norm_split(split)
        items = [u for u in items if u.split == wanted]
    if not items:
        raise ManifestError(f"{p}: no utterances" + (f" in split {split!r}" if split else ""))
    return items


def _from_corpus_reader(
    kind: str, path: Path, data_root: str | Path | None, split: str | None
) -> list[Utterance]:
    """Standard corpora through the corpus package's readers (one parser per protocol in the project)."""
    from training.corpus.readers import (
        ProtocolError,
        read_antideepfake_csv,
        read_asvspoof2019_la,
        read_in_the_wild,
    )

    try:
        if kind == "antideepfake":
            rows, problems = read_antideepfake_csv(path, data_root)
        elif kind == "in-the-wild":
            rows, problems = read_in_the_wild(path, data_root)
        else:
            rows, problems = read_asvspoof2019_la(path, data_root)
    except ProtocolError as exc:
        raise ManifestError(str(exc)) from None
    for problem in problems[:20]:
        print(f"warning: {problem}", file=sys.stderr)
    items = [
        Utterance(
            uid=row.clip_id or row.path,
            path=Path(row.path),
            label=0 if row.label == "spoof" else 1,
            system=row.system,
            subset=row.source,
            split=_norm_split(row.split),
            speaker=row.speaker,
            duration=row.duration if row.duration and row.duration > 0 else None,
            channel=row.channel,
        )
        for row in rows
    ]
    if split is not None:
        items = [u for u in items if u.split == _norm_split(split)]
    if not items:
        raise ManifestError(f"{path}: no utterances" + (f" in split {split!r}" if split else ""))
    return items


def _norm_split(text: str) -> str:
    value = text.strip().lower()
    return SPLIT_SYNONYMS.get(value, value)


def _resolve(raw: str, base: Path) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else base / path


def fill_durations(items: Sequence[Utterance]) -> list[Utterance]:
    """Durations from file headers where the manifest lacks them (needed for duration batching).

    A listed file that does not exist stops here, before any training step, with the file named.
    """
    out = []
    for u in items:
        if u.duration is None:
            if not u.path.is_file():
                raise ManifestError(f"{u.path}: no such audio file (listed in the manifest)")
            try:
                info = sf.info(str(u.path))
                u = replace(u, duration=info.frames / info.samplerate)
            except (sf.LibsndfileError, RuntimeError, OSError):
                x, rate = read_audio(u.path)
                u = replace(u, duration=len(x) / rate)
        out.append(u)
    return out


# --------------------------------------------------------------------------------------------------- batching


@dataclass(frozen=True)
class BatchPlan:
    """Duration-bucketed batching (AntiDeepfake: ``max_batch_length`` 100 s, crops of 10-13 s)."""

    max_batch_seconds: float = 100.0
    crop_min_s: float = 10.0
    crop_max_s: float = 13.0
    max_batch_size: int = 64

    def effective_duration(self, duration: float) -> float:
        return min(duration, self.crop_max_s)


def duration_batches(
    durations: Sequence[float], plan: BatchPlan, *, rng: np.random.Generator | None = None
) -> list[list[int]]:
    """Group indices into batches of similar duration whose padded cost stays under ``max_batch_seconds``.

    Sorting by duration keeps the in-batch length spread small, so cropping a batch to its shortest item (the
    collate step) throws little audio away. With ``rng`` the order of equal-duration items and of the batches
    is shuffled (a new order per epoch); without it the plan is deterministic.
    """
    idx = np.arange(len(durations))
    if rng is not None:
        idx = rng.permutation(idx)
    order = sorted(idx.tolist(), key=lambda i: plan.effective_duration(durations[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0.0
    for i in order:
        d = plan.effective_duration(durations[i])
        cost = max(longest, d) * (len(current) + 1)
        if current and (cost > plan.max_batch_seconds or len(current) >= plan.max_batch_size):
            batches.append(current)
            current, longest = [], 0.0
        current.append(i)
        longest = max(longest, d)
    if current:
        batches.append(current)
    if rng is not None:
        perm = rng.permutation(len(batches))
        batches = [batches[i] for i in perm]
    return batches


def random_crop(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``length``-sample window (the whole signal when it is not longer)."""
    if len(x) <= length:
        return x
    start = int(rng.integers(0, len(x) - length + 1))
    return x[start : start + length]


def iterate_chunks(items: Sequence[Utterance], size: int) -> Iterator[Sequence[Utterance]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
