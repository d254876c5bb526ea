"""Split rules: which clips are train, dev or eval.

Designed for leave-one-out evaluation (a detector is judged on speakers and synthesizers it never saw):

* **Asterisk**: the Russian voice (``ru``, both the G.722 and the 8 kHz copies) is ``eval``; the other four
  languages (three voices: Allison speaks en and es) are ``train``. Narrowband copies share the split of the
  wideband recording (same speaker ids), so no recording sits on both sides.
* **fillets_cs**: the two main actors (``m``, ``v``) and the minor speakers not listed here are ``train``;
  :data:`FILLETS_CS_DEV` are ``dev`` and :data:`FILLETS_CS_EVAL` are ``eval``.
* **every other real source** (fillets_en, klettres, ktuberling, hedgewars, codec2): speaker-disjoint. The
  source's speakers are ordered by a SHA-1 of their id; the first 15 % (at least one when the source has 3 or
  more speakers) are ``dev``, the next 15 % (same minimum) ``eval``, the rest ``train``.
* **spoof**: by system, never by clip: :data:`SPOOF_SPLIT`. WORLD resyntheses are made only from ``dev`` real
  clips and Griffin-Lim only from ``eval`` real clips, so no resynthesis shares a recording with training
  data.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

FILLETS_CS_DEV = frozenset(
    {"fillets_cs-b1", "fillets_cs-hs", "fillets_cs-pap", "fillets_cs-1", "fillets_cs-3", "fillets_cs-kd"}
)
FILLETS_CS_EVAL = frozenset(
    {
        "fillets_cs-b2",
        "fillets_cs-c",
        "fillets_cs-x",
        "fillets_cs-2",
        "fillets_cs-4",
        "fillets_cs-0",
        "fillets_cs-r",
    }
)

#: system -> (split, family)
SPOOF_SYSTEMS: dict[str, tuple[str, str]] = {
    "espeak": ("dev", "formant"),
    "world": ("dev", "vocoder"),
    "flite_kal16": ("eval", "diphone"),
    "flite_slt": ("eval", "parametric"),
    "flite_awb": ("eval", "parametric"),
    "flite_rms": ("eval", "parametric"),
    "festival_kal": ("eval", "diphone"),
    "festival_ked": ("eval", "diphone"),
    "griffinlim": ("eval", "vocoder"),
}
SPOOF_SPLIT = {k: v[0] for k, v in SPOOF_SYSTEMS.items()}
SPOOF_FAMILY = {k: v[1] for k, v in SPOOF_SYSTEMS.items()}

#: which real split each resynthesis system draws its parent clips from
RESYNTHESIS_PARENT_SPLIT = {"world": "dev", "griffinlim": "eval"}

HELD_OUT_FRACTION = 0.15


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def hashed_speaker_splits(speakers: Iterable[str]) -> dict[str, str]:
    """Speaker-disjoint split of one source's speakers (see the module docstring)."""
    ordered = sorted(set(speakers), key=lambda s: (_digest(s), s))
    n = len(ordered)
    k = math.floor(n * HELD_OUT_FRACTION + 0.5)
    if n >= 3:
        k = max(1, k)
    out = {}
    for i, spk in enumerate(ordered):
        out[spk] = "dev" if i < k else "eval" if i < 2 * k else "train"
    return out


def real_split(source: str, speaker: str, language: str, source_speaker_splits: dict[str, str]) -> str:
    """Split of a bona fide clip; ``source_speaker_splits`` is :func:`hashed_speaker_splits` of its source."""
    if source == "asterisk":
        return "eval" if language == "ru" else "train"
    if source == "fillets_cs":
        if speaker in FILLETS_CS_DEV:
            return "dev"
        if speaker in FILLETS_CS_EVAL:
            return "eval"
        return "train"
    return source_speaker_splits.get(speaker, "train")
