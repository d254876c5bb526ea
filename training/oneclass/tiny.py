"""A tiny generated corpus for tests and CI: speech-like signals made with numpy, nothing downloaded.

"Real" clips are glottal-pulse trains with jittered, gliding pitch through random vowel formants, with
syllable envelopes and a little breath noise. "Spoof" systems are deliberately machine-like variants of the
same source (constant pitch; a buzz without formant motion; a noise-vocoded version): enough for the pipeline
to have two classes with a measurable difference, never a claim about real synthesizers. The manifest has the
same columns as the corpus builder's, with train/dev/eval splits and wideband/telephone channels.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from training.audio_io import g711_roundtrip

SR = 16000
VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (570, 840, 2410), (300, 870, 2240))


def _formant_filter(x: np.ndarray, formants: list[tuple[float, float, float]]) -> np.ndarray:
    """Time-varying formant filter applied per 20 ms block in the frequency domain (cheap and adequate)."""
    block = 320
    out = np.zeros_like(x)
    freqs = np.fft.rfftfreq(2 * block, 1 / SR)
    win = np.hanning(2 * block)
    for i, start in enumerate(range(0, len(x) - 2 * block, block)):
        f1, f2, f3 = formants[min(i, len(formants) - 1)]
        gain = sum(1.0 / (1.0 + ((freqs - f) / (60 + 0.08 * f)) ** 2) for f in (f1, f2, f3)) + 0.02
        seg = np.fft.irfft(np.fft.rfft(x[start : start + 2 * block] * win) * gain)
        out[start : start + 2 * block] += seg
    return out


def speech_like(rng: np.random.Generator, seconds: float, kind: str = "real") -> np.ndarray:
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0_base = rng.uniform(90, 220)
    if kind == "flat":
        f0 = np.full(n, f0_base)
    else:
        glide = np.cumsum(rng.normal(0, 0.4, n // 800 + 2))
        f0 = f0_base * (
            1 + 0.08 * np.interp(t, np.linspace(0, seconds, len(glide)), glide / (np.abs(glide).max() + 1e-9))
        )
        f0 *= 1 + 0.01 * rng.standard_normal(n).cumsum() / np.sqrt(np.arange(1, n + 1))
    phase = np.cumsum(f0 / SR)
    pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
    if kind == "noisevoc":
        pulses = rng.standard_normal(n) * 0.3
    n_blocks = n // 320 + 2
    vowel_seq = [VOWELS[int(rng.integers(len(VOWELS)))] for _ in range(max(2, int(seconds * 4)))]
    if kind == "static":
        vowel_seq = vowel_seq[:1] * len(vowel_seq)
    idx = np.linspace(0, len(vowel_seq) - 1, n_blocks)
    formants = []
    for v in idx:
        a, b = vowel_seq[int(np.floor(v))], vowel_seq[min(int(np.floor(v)) + 1, len(vowel_seq) - 1)]
        w = v - np.floor(v)
        formants.append(tuple((1 - w) * fa + w * fb for fa, fb in zip(a, b, strict=True)))
    y = _formant_filter(pulses, formants)
    syll = 0.5 - 0.5 * np.cos(2 * np.pi * t * rng.uniform(3, 5))
    y = y * (0.3 + 0.7 * syll)
    if kind != "static":
        y = y + 0.02 * np.std(y) * rng.standard_normal(n)
    y = y / (np.max(np.abs(y)) + 1e-9) * 0.5
    return y.astype(np.float32)


SYSTEMS = {"flat": "parametric", "static": "formant", "noisevoc": "vocoder"}


def build_tiny_corpus(root: str | Path, clips_per_split: int = 6, seed: int = 0) -> Path:
    """Write WAVs and ``manifest.csv`` under ``root``; returns the manifest path."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    header = [
        "path",
        "label",
        "system",
        "family",
        "source",
        "speaker",
        "language",
        "band",
        "channel",
        "split",
        "duration",
        "licence",
    ]
    for split, n_real in (
        ("train", 3 * clips_per_split),
        ("dev", 2 * clips_per_split),
        ("eval", clips_per_split),
    ):
        for channel in ("wideband", "telephone"):
            items = [("bonafide", "-", "none", f"gen{i % 3}") for i in range(n_real)]
            if split != "train":
                items += [
                    ("spoof", s, fam, "tts") for s, fam in SYSTEMS.items() for _ in range(max(2, n_real // 3))
                ]
            for k, (label, system, family, speaker) in enumerate(items):
                kind = "real" if label == "bonafide" else system
                x = speech_like(rng, float(rng.uniform(1.2, 3.0)), kind)
                if channel == "telephone":
                    x = g711_roundtrip(x, SR, "mulaw")
                path = root / split / channel / f"{label}_{system}_{k:03d}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, x, SR, subtype="PCM_16")
                rows.append(
                    [
                        str(path),
                        label,
                        system,
                        family,
                        "generated" if label == "bonafide" else "generated-tts",
                        f"{split}-{speaker}",
                        "none",
                        "wideband" if channel == "wideband" else "narrowband",
                        channel,
                        split,
                        f"{len(x) / SR:.3f}",
                        "generated (public domain)",
                    ]
                )
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return manifest
