"""Readers for corpora users already have: their protocol files become the same manifest rows as the built
corpus.

* ASVspoof 2019 LA: ``ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt``, 5 space-separated columns
  ``SPEAKER UTT_ID - ATTACK KEY``; audio in ``ASVspoof2019_LA_{train,dev,eval}/flac/UTT_ID.flac``.
* In-the-Wild: ``meta.csv`` with header ``file,speaker,label``, label ``spoof`` or ``bona-fide``; audio
  next to it.
* AntiDeepfake CSV protocol: header
``ID,Label,Duration,SampleRate,Path,Attack,Speaker,Proportion,AudioChannel,
  AudioEncoding,AudioBitSample,Language``; ``Label`` is ``real`` or ``fake``; ``$ROOT`` in ``Path`` is
  replaced by the data folder.

The clips of these corpora are not re-processed: ``channel`` is ``original`` (whatever chain the corpus used).
Every reader returns ``(rows, problems)``: a row whose audio is missing is left out and named in ``problems``,
and a malformed protocol line raises :class:`ProtocolError` with the file and line number.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import soundfile as sf

from training.corpus.manifest import ManifestRow

#: ASVspoof 2019 LA attacks -> family, from the challenge's evaluation plan (A16 = A04, A19 = A06 at test
#: time).
ASVSPOOF2019_FAMILY = {
    "A01": "neural", "A02": "vocoder", "A03": "vocoder", "A04": "concatenative", "A05": "vocoder",
    "A06": "filtering", "A07": "vocoder", "A08": "neural", "A09": "vocoder", "A10": "neural",
    "A11": "vocoder", "A12": "neural", "A13": "filtering", "A14": "vocoder", "A15": "neural",
    "A16": "concatenative", "A17": "filtering", "A18": "vocoder", "A19": "filtering",
}  # fmt: skip

_ASV_SPLIT = {"train": "train", "dev": "dev", "eval": "eval"}
_ADF_SPLIT = {
    "train": "train",
    "valid": "dev",
    "dev": "dev",
    "validation": "dev",
    "test": "eval",
    "eval": "eval",
}


class ProtocolError(ValueError):
    """A protocol file is missing or malformed; the message names the file and line."""


def _band_of(rate: int | None) -> str:
    return "narrowband" if rate is not None and 0 < rate <= 8000 else "wideband"


def _probe(path: Path) -> tuple[float, int] | None:
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None
    return float(info.frames) / float(info.samplerate), int(info.samplerate)


def read_asvspoof2019_la(
    protocol: str | os.PathLike[str], audio_dir: str | os.PathLike[str] | None = None, probe: bool = True
) -> tuple[list[ManifestRow], list[str]]:
    """Rows for one ASVspoof 2019 LA CM protocol file.

    ``audio_dir`` is the folder holding ``UTT_ID.flac``; by default it is derived from the protocol's location
    in the official layout (``LA/ASVspoof2019_LA_cm_protocols/`` -> ``LA/ASVspoof2019_LA_<split>/flac``).
    """
    protocol = Path(protocol)
    if not protocol.is_file():
        raise ProtocolError(f"{protocol}: protocol file not found")
    name = protocol.name.lower()
    split = next((s for key, s in _ASV_SPLIT.items() if f".{key}." in name), None)
    if split is None:
        raise ProtocolError(
            f"{protocol}: cannot tell the split from the name (expected .train./.dev./.eval.)"
        )
    if audio_dir is None:
        audio_dir = protocol.parent.parent / f"ASVspoof2019_LA_{split}" / "flac"
    audio_dir = Path(audio_dir)
    rows: list[ManifestRow] = []
    problems: list[str] = []
    with protocol.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 5:
                raise ProtocolError(
                    f"{protocol}:{lineno}: expected 5 columns, got {len(parts)}: {line.strip()!r}"
                )
            speaker, utt, _, attack, key = parts
            if key not in ("bonafide", "spoof"):
                raise ProtocolError(f"{protocol}:{lineno}: key must be bonafide or spoof, got {key!r}")
            path = audio_dir / f"{utt}.flac"
            meta = _probe(path) if probe else (0.0, 16000)
            if meta is None:
                problems.append(f"{path}: missing or unreadable (protocol {protocol.name} line {lineno})")
                continue
            system = "bonafide" if key == "bonafide" else attack
            rows.append(
                ManifestRow(
                    path=str(path),
                    label=key,
                    system=system,
                    family="none" if key == "bonafide" else ASVSPOOF2019_FAMILY.get(attack, "unknown"),
                    source="asvspoof2019_la",
                    speaker=f"asvspoof2019-{speaker}",
                    language="en",
                    band=_band_of(meta[1]),
                    channel="original",
                    split=split,
                    duration=meta[0],
                    licence="ODC-By-1.0 (ASVspoof 2019)",
                    clip_id=utt,
                )
            )
    return rows, problems


def read_in_the_wild(
    meta_csv: str | os.PathLike[str], audio_dir: str | os.PathLike[str] | None = None, probe: bool = True
) -> tuple[list[ManifestRow], list[str]]:
    """Rows for In-the-Wild's ``meta.csv`` (every clip is ``eval``: the corpus is for testing)."""
    meta_csv = Path(meta_csv)
    if not meta_csv.is_file():
        raise ProtocolError(f"{meta_csv}: meta.csv not found")
    audio_dir = Path(audio_dir) if audio_dir is not None else meta_csv.parent
    rows: list[ManifestRow] = []
    problems: list[str] = []
    with meta_csv.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"file", "speaker", "label"} <= set(reader.fieldnames):
            raise ProtocolError(
                f"{meta_csv}: expected a header with file,speaker,label; got {reader.fieldnames}"
            )
        for lineno, rec in enumerate(reader, start=2):
            label = (rec["label"] or "").strip().lower()
            if label not in ("spoof", "bona-fide", "bonafide"):
                raise ProtocolError(
                    f"{meta_csv}:{lineno}: label must be spoof or bona-fide, got {rec['label']!r}"
                )
            path = audio_dir / rec["file"]
            meta = _probe(path) if probe else (0.0, 16000)
            if meta is None:
                problems.append(f"{path}: missing or unreadable ({meta_csv.name} line {lineno})")
                continue
            spoof = label == "spoof"
            rows.append(
                ManifestRow(
                    path=str(path),
                    label="spoof" if spoof else "bonafide",
                    system="unknown" if spoof else "bonafide",
                    family="unknown" if spoof else "none",
                    source="in_the_wild",
                    speaker=f"itw-{rec['speaker'].strip()}",
                    language="en",
                    band=_band_of(meta[1]),
                    channel="original",
                    split="eval",
                    duration=meta[0],
                    licence="In-the-Wild (research use)",
                    clip_id=Path(rec["file"]).stem,
                )
            )
    return rows, problems


ANTIDEEPFAKE_COLUMNS = (
    "ID", "Label", "Duration", "SampleRate", "Path", "Attack", "Speaker", "Proportion", "AudioChannel",
    "AudioEncoding", "AudioBitSample", "Language",
)  # fmt: skip


def read_antideepfake_csv(
    protocol: str | os.PathLike[str], data_folder: str | os.PathLike[str] | None = None, probe: bool = False
) -> tuple[list[ManifestRow], list[str]]:
    """Rows for an AntiDeepfake protocol CSV. ``$ROOT`` in ``Path`` becomes ``data_folder``; ``Proportion``
    (train / valid / test) gives the split; the ID prefix before the first ``-`` names the source. With
    ``probe`` the audio is checked to exist (off by default: these protocols run to millions of rows)."""
    protocol = Path(protocol)
    if not protocol.is_file():
        raise ProtocolError(f"{protocol}: protocol CSV not found")
    root = str(data_folder) if data_folder is not None else str(protocol.parent)
    rows: list[ManifestRow] = []
    problems: list[str] = []
    with protocol.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("ID", "Label", "Path") if c not in (reader.fieldnames or [])]
        if missing:
            raise ProtocolError(
                f"{protocol}: missing columns {missing} (expected {','.join(ANTIDEEPFAKE_COLUMNS)})"
            )
        for lineno, rec in enumerate(reader, start=2):
            label = (rec["Label"] or "").strip().lower()
            if label not in ("real", "fake"):
                raise ProtocolError(f"{protocol}:{lineno}: Label must be real or fake, got {rec['Label']!r}")
            path = Path(rec["Path"].replace("$ROOT", root))
            try:
                rate = int(float(rec.get("SampleRate") or 0)) or None
                duration = float(rec.get("Duration") or 0.0)
            except ValueError as exc:
                raise ProtocolError(f"{protocol}:{lineno}: bad Duration/SampleRate ({exc})") from exc
            if probe:
                meta = _probe(path)
                if meta is None:
                    problems.append(f"{path}: missing or unreadable ({protocol.name} line {lineno})")
                    continue
                duration, rate = meta
            proportion = (rec.get("Proportion") or "").strip().lower()
            split = _ADF_SPLIT.get(proportion)
            if split is None:
                raise ProtocolError(f"{protocol}:{lineno}: unknown Proportion {rec.get('Proportion')!r}")
            rid = rec["ID"].strip()
            attack = (rec.get("Attack") or "").strip()
            fake = label == "fake"
            rows.append(
                ManifestRow(
                    path=str(path),
                    label="spoof" if fake else "bonafide",
                    system=(attack if attack and attack != "-" else "unknown") if fake else "bonafide",
                    family="unknown" if fake else "none",
                    source=rid.split("-", 1)[0] if "-" in rid else "antideepfake",
                    speaker=(rec.get("Speaker") or "").strip(),
                    language=(rec.get("Language") or "").strip().lower(),
                    band=_band_of(rate),
                    channel="original",
                    split=split,
                    duration=duration,
                    licence="see the source corpus",
                    clip_id=rid,
                )
            )
    return rows, problems
