"""The bona fide sources: which Debian packages, where their speech lies, and who speaks.

Only the sources listed in the project's offline-data reference are here; other speech packages are reserved
for an independent evaluation and must not be added. Each discoverer walks one unpacked package tree (``dpkg
-x`` output) and yields :class:`SourceClip` descriptions; nothing is decoded here, so discovery is instant and
a bad file only fails later, in its own job, with its name in the message.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ASTERISK_LANGS: dict[str, tuple[str, str]] = {
    # language code -> (voice folder, licence)
    "en": ("en_US_f_Allison", "CC-BY-SA-3.0"),
    "es": ("es_MX_f_Allison", "CC-BY-SA-3.0"),
    "fr": ("fr_CA_f_June", "CC-BY-SA-3.0"),
    "it": ("it_IT_m_Carlo", "CC-BY-SA-3.0"),
    "ru": ("ru_RU_f_IvrvoiceRU", "CC-BY-3.0"),
}

#: codec2-examples is mostly codec and modem test material; these are the clean speech recordings in it
#: (the rest: off-air radio recordings, sine and modem test signals, codec-processed copies, a concatenation).
CODEC2_SPEECH: dict[str, tuple[str, int]] = {
    # stem -> (relative path, sample rate for headerless raw files)
    "big_dog": ("wav/big_dog.wav", 8000),
    "cross": ("wav/cross.wav", 8000),
    "forig": ("wav/forig.wav", 8000),
    "morig": ("wav/morig.wav", 8000),
    "hts1a": ("wav/hts1a.wav", 8000),
    "hts2a": ("wav/hts2a.wav", 8000),
    "mmt1": ("wav/mmt1.wav", 8000),
    "kristoff": ("raw/kristoff.raw", 8000),
    "david4": ("wav/david4.wav", 8000),
    "wia": ("wav/wia_16kHz.wav", 16000),
    "speech_orig_16k": ("raw/speech_orig_16k.wav", 16000),
}

#: Hedgewars voice packs made with deliberate audio effects: not natural speech.
HEDGEWARS_EFFECTED = frozenset({"Robot"})


@dataclass(frozen=True)
class SourceClip:
    """One real recording to process. ``input_format``/``raw_rate`` tell the reader how to open it."""

    clip_id: str
    path: Path
    source: str
    speaker: str
    language: str
    licence: str
    package: str
    input_format: str | None = None
    raw_rate: int | None = None
    text: str = ""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


# ----------------------------------------------------------------------------------------------------
# Asterisk prompts


def asterisk_transcripts(doc_root: Path, lang: str) -> dict[str, str]:
    """Prompt name -> text, from ``core-sounds-<lang>.txt(.gz)`` shipped by ``asterisk-core-sounds-<lang>``.

    Lines are ``name: text``; ``;`` starts a comment. Names may contain a folder (``digits/1``).
    """
    out: dict[str, str] = {}
    candidates = list(doc_root.rglob(f"core-sounds-{lang}.txt*"))
    for path in candidates:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for line in raw.decode("utf-8-sig", errors="replace").splitlines():
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            text = text.strip().strip('"').strip()
            if name.strip() and text:
                out[name.strip()] = text
    return out


def discover_asterisk(
    root: Path, lang: str, variant: str, package: str, transcripts: dict[str, str] | None = None
) -> Iterator[SourceClip]:
    """Asterisk prompts of one language; ``variant`` is ``g722`` (16 kHz wideband) or ``wav`` (8 kHz)."""
    voice, licence = ASTERISK_LANGS[lang]
    base = root / "usr/share/asterisk/sounds" / voice
    suffix = ".g722" if variant == "g722" else ".wav"
    speaker = voice.split("_")[-1]  # en and es are the same speaker (Allison)
    for path in sorted(base.rglob(f"*{suffix}")):
        rel = path.relative_to(base).with_suffix("")
        if rel.parts[0] == "silence":
            continue
        name = rel.as_posix()
        yield SourceClip(
            clip_id=f"asterisk-{variant}-{lang}-{_slug(name)}",
            path=path,
            source="asterisk",
            speaker=f"asterisk-{speaker}",
            language=lang,
            licence=licence,
            package=package,
            input_format="g722" if variant == "g722" else None,
            text=(transcripts or {}).get(name, ""),
        )


# ----------------------------------------------------------------------------------------------------
# game and teaching data


def fillets_speaker(stem: str) -> str:
    """Speaker code of a Fish Fillets dialog file: the 2nd ``-`` field (``vit-hs-klid1`` -> ``hs``), or the
    1st when the name has only two fields (``m-obdivovat`` -> ``m``)."""
    fields = stem.split("-")
    if len(fields) >= 3 and fields[1]:
        return fields[1]
    return fields[0]


def discover_fillets(root: Path, lang: str, package: str) -> Iterator[SourceClip]:
    base = root / "usr/share/games/fillets-ng/sound"
    source = "fillets_cs" if lang == "cs" else "fillets_en"
    for path in sorted(base.glob(f"**/{lang}/*.ogg")):
        if "-" not in path.stem:  # keyboard clicks and other effects carry no speaker field
            continue
        level = path.parent.parent.name
        yield SourceClip(
            clip_id=f"{source}-{_slug(level)}-{_slug(path.stem)}",
            path=path,
            source=source,
            speaker=f"{source}-{fillets_speaker(path.stem)}",
            language=lang,
            licence="GPL-2+",
            package=package,
        )


def discover_klettres(root: Path, package: str) -> Iterator[SourceClip]:
    base = root / "usr/share/klettres"
    for path in sorted(base.glob("*/*/*.ogg")):
        lang = path.parent.parent.name
        kind = path.parent.name
        yield SourceClip(
            clip_id=f"klettres-{_slug(lang)}-{_slug(kind)}-{_slug(path.stem)}",
            path=path,
            source="klettres",
            speaker=f"klettres-{lang}",
            language=lang.split("_")[0],
            licence="GPL-2+",
            package=package,
        )


def discover_ktuberling(root: Path, package: str) -> Iterator[SourceClip]:
    base = root / "usr/share/ktuberling/sounds"
    for path in sorted(base.glob("*/*")):
        if path.suffix.lower() not in (".ogg", ".wav", ".opus", ".flac") or not path.is_file():
            continue
        lang = path.parent.name
        spk = lang.split("@")[
            0
        ]  # sr, sr@latin, ... are one recording set (duplicates are dropped by content)
        yield SourceClip(
            clip_id=f"ktuberling-{_slug(lang)}-{_slug(path.stem)}",
            path=path,
            source="ktuberling",
            speaker=f"ktuberling-{spk}",
            language=spk.split("_")[0],
            licence="GPL-2+",
            package=package,
        )


def discover_hedgewars(root: Path, package: str) -> Iterator[SourceClip]:
    base = root / "usr/share/games/hedgewars/Data/Sounds/voices"
    for path in sorted(base.glob("*/*.ogg")):
        pack = path.parent.name
        if pack in HEDGEWARS_EFFECTED:
            continue
        lang = {
            "Default_es": "es",
            "Default_pl": "pl",
            "Default_ru": "ru",
            "Default_uk": "uk",
            "Russian": "ru",
            "Russian_pl": "pl",
        }.get(pack, "en")
        yield SourceClip(
            clip_id=f"hedgewars-{_slug(pack)}-{_slug(path.stem)}",
            path=path,
            source="hedgewars",
            speaker=f"hedgewars-{pack}",
            language=lang,
            licence="GFDL-1.3",
            package=package,
        )


def discover_codec2(root: Path, package: str) -> Iterator[SourceClip]:
    base = root / "usr/share/codec2"
    for stem, (rel, rate) in sorted(CODEC2_SPEECH.items()):
        path = base / rel
        if not path.exists():
            alt = base / "wav" / Path(rel).name
            path = alt if alt.exists() else path
        if not path.exists():
            continue
        raw = path.suffix == ".raw"
        yield SourceClip(
            clip_id=f"codec2-{_slug(stem)}",
            path=path,
            source="codec2",
            speaker=f"codec2-{stem.rstrip('0123456789').removesuffix('_orig_16k')}",
            language="en",
            licence="LGPL-2.1",
            package=package,
            raw_rate=rate if raw else None,
        )
