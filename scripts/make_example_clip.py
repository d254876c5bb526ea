#!/usr/bin/env python3
"""Build the example clip shipped in the package: stream_guard/examples/formant-vowels.wav.

The clip is made here, from numbers only, so the project may redistribute it: a glottal pulse train with a
wandering pitch, shaped by formant resonators into a sequence of vowels with syllable envelopes and short
pauses. It is synthetic by construction (a 1950s-style formant synthesiser), which makes it a fair first thing
to point the detector at, not a benchmark of it. Deterministic: the same bytes on every run.

    python scripts/make_example_clip.py [--out PATH] [--seconds 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
# (F1, F2, F3) in Hz for a few vowels, average adult values.
VOWELS = {
    "a": (730, 1090, 2440),
    "e": (530, 1840, 2480),
    "i": (270, 2290, 3010),
    "o": (570, 840, 2410),
    "u": (300, 870, 2240),
}
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "stream_guard" / "examples" / "formant-vowels.wav"


def resonator(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    """Two-pole resonator (Klatt style), unit gain at DC."""
    r = np.exp(-np.pi * bandwidth / sr)
    c = -r * r
    b = 2 * r * np.cos(2 * np.pi * freq / sr)
    a = 1 - b - c
    y = np.zeros_like(x)
    y1 = y2 = 0.0
    for n, xn in enumerate(x):
        yn = a * xn + b * y1 + c * y2
        y[n] = yn
        y2, y1 = y1, yn
    return y


def syllable(vowel: str, seconds: float, f0: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(seconds * sr)
    t = np.arange(n) / sr
    pitch = f0 * (1 + 0.08 * np.sin(2 * np.pi * 3 * t / seconds) - 0.1 * t / seconds)
    phase = np.cumsum(pitch / sr)
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal period
    source = np.convolve(pulses, np.hanning(int(0.004 * sr)), mode="same")  # soften the pulses
    source += 0.02 * rng.standard_normal(n)  # breath noise
    out = source
    for formant, bw in zip(VOWELS[vowel], (80, 100, 140), strict=True):
        out = resonator(out, formant, bw, sr)
    envelope = np.minimum(1.0, np.minimum(t, seconds - t) / 0.05)
    return out * envelope


def make_clip(seconds: float = 4.0, sr: int = SAMPLE_RATE) -> np.ndarray:
    rng = np.random.default_rng(20250)
    parts = [np.zeros(int(0.25 * sr))]
    order = "aeiouaeiou"
    k = 0
    while sum(len(p) for p in parts) < seconds * sr:
        dur = 0.18 + 0.12 * rng.random()
        parts.append(syllable(order[k % len(order)], dur, 110 + 40 * rng.random(), rng, sr))
        parts.append(np.zeros(int((0.03 + 0.12 * rng.random()) * sr)))
        k += 1
    clip = np.concatenate(parts)[: int(seconds * sr)]
    clip = clip / np.max(np.abs(clip)) * 0.5
    return clip.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.out, make_clip(args.seconds), SAMPLE_RATE, subtype="PCM_16")
    print(f"wrote {args.out} ({args.seconds:g} s, {SAMPLE_RATE} Hz, 16-bit PCM)")


if __name__ == "__main__":
    main()
