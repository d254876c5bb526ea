"""The corpus manifest: one CSV row per stored clip, the interface between the corpus and every trainer.

Columns (see ``training/corpus/README.md`` for the meaning of each value):
``path, label, system, family, source, speaker, language, band, channel, split, duration, licence``, then
``clip_id, parent, text``. ``path`` is absolute. Readers of other corpora (:mod:`training.corpus.readers`)
produce the same rows.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

LABELS = ("bonafide", "spoof")
SPLITS = ("train", "dev", "eval")
BANDS = ("wideband", "narrowband")
CHANNELS = ("wideband", "telephone")
FAMILIES = (
    "none",
    "diphone",
    "formant",
    "parametric",
    "vocoder",
    "neural",
    "concatenative",
    "filtering",
    "unknown",
)


class ManifestError(ValueError):
    """A manifest file is missing, malformed, or has rows with invalid values; the message names the
    file/row."""


@dataclass
class ManifestRow:
    path: str
    label: str
    system: str
    family: str
    source: str
    speaker: str
    language: str
    band: str
    channel: str
    split: str
    duration: float
    licence: str
    clip_id: str = ""
    parent: str = ""
    text: str = ""

    def validate(self) -> None:
        if self.label not in LABELS:
            raise ManifestError(
                f"clip {self.clip_id or self.path}: label must be one of {LABELS}, got {self.label!r}"
            )
        if self.split not in SPLITS:
            raise ManifestError(
                f"clip {self.clip_id or self.path}: split must be one of {SPLITS}, got {self.split!r}"
            )
        if not (self.duration >= 0.0):
            raise ManifestError(f"clip {self.clip_id or self.path}: bad duration {self.duration!r}")


COLUMNS = [f.name for f in fields(ManifestRow)]


def write_manifest(path: str | os.PathLike[str], rows: Iterable[ManifestRow]) -> int:
    """Write rows atomically (temporary file + rename); returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".csv")
    n = 0
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            for row in rows:
                d = asdict(row)
                d["duration"] = f"{row.duration:.3f}"
                writer.writerow(d)
                n += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestRow]:
    """Read and validate a manifest; raises :class:`ManifestError` naming the file and line on bad content."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (build it with `python -m training.corpus build`)")
    rows: list[ManifestRow] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS[:12] if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: missing columns {missing}")
        for lineno, rec in enumerate(reader, start=2):
            try:
                row = ManifestRow(
                    **{c: rec.get(c, "") or "" for c in COLUMNS if c != "duration"},
                    duration=float(rec["duration"]),
                )
                row.validate()
            except (ValueError, TypeError) as exc:
                raise ManifestError(f"{path}:{lineno}: {exc}") from exc
            rows.append(row)
    return rows


def summarize(rows: Iterable[ManifestRow], keys: tuple[str, ...]) -> dict[tuple[str, ...], tuple[int, float]]:
    """(clip count, hours) per combination of the given columns."""
    acc: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0, 0.0])
    for row in rows:
        k = tuple(str(getattr(row, key)) for key in keys)
        acc[k][0] += 1
        acc[k][1] += row.duration / 3600.0
    return {k: (int(v[0]), float(v[1])) for k, v in sorted(acc.items())}
