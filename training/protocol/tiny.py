"""A tiny generated corpus for the protocol's smoke test: two real "sources" and three synthetic families.

It reuses the one-class smoke-test signal generator (:func:`training.oneclass.tiny.speech_like`: jittered
glottal pulses through moving formants for "real"; constant pitch, frozen formants or a noise-excited vocoder
for the three "synthesizers") and adds what the protocol needs: more than one real source, speaker-disjoint
train/dev/eval splits inside each source, both channels (the telephone copy is a mu-law 8 kHz round trip),
and a source with no usable speech when asked (digital silence), to exercise the error path. Numpy only;
nothing is downloaded; never a claim about real synthesizers.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from training.audio_io import g711_roundtrip
from training.oneclass.tiny import SR, SYSTEMS, speech_like

HEADER = ["path", "label", "system", "family", "source", "speaker", "language", "band", "channel", "split",
          "duration", "licence", "clip_id", "parent", "text"]  # fmt: skip


def build_protocol_corpus(
    root: str | Path, clips_per_speaker: int = 2, spoof_clips: int = 6, seed: int = 0,
    silent_source: bool = False,
) -> Path:  # fmt: skip
    """Write WAVs and ``manifest.csv`` under ``root``; returns the manifest path."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows: list[list[str]] = []

    def add(x: np.ndarray, label: str, system: str, family: str, source: str, speaker: str, split: str,
            clip_id: str) -> None:  # fmt: skip
        for channel in ("wideband", "telephone"):
            y = g711_roundtrip(x, SR, "mulaw") if channel == "telephone" else x
            path = root / channel / source / f"{clip_id}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, y, SR, subtype="PCM_16")
            meta = [source, speaker, "none", "wideband", channel, split, f"{len(y) / SR:.3f}"]
            licence = "generated (public domain)"
            rows.append([str(path), label, system, family, *meta, licence, clip_id, "", ""])

    sources = ["gen_a", "gen_b"] + (["silent"] if silent_source else [])
    for source in sources:
        for split, n_speakers in (("train", 3), ("dev", 2), ("eval", 2)):
            for s in range(n_speakers):
                speaker = f"{source}-{split}{s}"
                for k in range(clips_per_speaker):
                    seconds = float(rng.uniform(1.2, 2.6))
                    if source == "silent":
                        x = np.zeros(int(seconds * SR), dtype=np.float32)
                    else:
                        x = speech_like(rng, seconds, "real")
                        if source == "gen_b":  # a second recording chain: duller, quieter
                            x = np.convolve(x, np.ones(3, dtype=np.float32) / 3, mode="same").astype(
                                np.float32
                            )
                            x *= 0.5
                    add(x, "bonafide", "bonafide", "none", source, speaker, split, f"{speaker}-{k}")
    for kind, family in SYSTEMS.items():
        for k in range(spoof_clips):
            x = speech_like(rng, float(rng.uniform(1.2, 2.6)), kind)
            add(x, "spoof", kind, family, "tts", f"tts-{kind}", "dev", f"{kind}-{k}")
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows)
    return manifest


def snapshot_manifest(corpus: str | Path, out: str | Path) -> Path:
    """Write a manifest of the finished clips of a corpus build from its per-clip sidecars
    (``<corpus>/rows/*.json``, each ``{"rows": [...], "skipped": reason}``); returns ``out``."""
    import json

    from training.corpus.manifest import ManifestRow, write_manifest
    from training.oneclass.data import DataError

    rows_dir = Path(corpus).expanduser() / "rows"
    files = sorted(rows_dir.glob("*.json"))
    if not files:
        raise DataError(f"{rows_dir}: no finished clip sidecars (is this a corpus folder?)")
    rows = []
    for f in files:
        try:
            data = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a sidecar being written right now
        if data.get("skipped"):
            continue
        rows.extend(ManifestRow(**r) for r in data.get("rows", []))
    write_manifest(out, rows)
    return Path(out)
