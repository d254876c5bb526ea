"""``python -m training.augment demo --out DIR [--input FILE]``: before/after spectrograms of each
augmentation and a few draws of each preset; ``python -m training.augment codecs``: which codecs run here.

Without ``--input`` the clip is a speech-like test signal made here (a glottal pulse train with a gliding
pitch through moving formant resonators, with syllable envelopes and fricative bursts), so the picture carries
no third-party audio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

from training.augment.chain import build_augmentation

SAMPLE_RATE = 16000

#: (file stem, title, config entry) per picture; each applied alone with p = 1 and a fixed seed
PANELS: list[tuple[str, str, dict]] = [
    (
        "telephone_band",
        "telephone band 300-3400 Hz",
        {"name": "telephone_band", "low_hz": [300, 300], "high_hz": [3400, 3400]},
    ),
    ("g711_mulaw", "G.711 mu-law 8 kHz", {"name": "g711", "law": "mulaw"}),
    ("g711_alaw", "G.711 A-law 8 kHz", {"name": "g711", "law": "alaw"}),
    ("codec_g722", "G.722 64 kbit/s", {"name": "codec", "codecs": ["g722"]}),
    ("codec_opus", "Opus 6 kbit/s", {"name": "codec", "codecs": ["opus"], "bitrates": {"opus": [6000]}}),
    (
        "codec_opus_nb",
        "Opus narrowband 8 kbit/s",
        {"name": "codec", "codecs": ["opus_nb"], "bitrates": {"opus_nb": [8000]}},
    ),
    (
        "codec_amrnb",
        "AMR-NB 4.75 kbit/s",
        {"name": "codec", "codecs": ["amrnb"], "bitrates": {"amrnb": [4750]}},
    ),
    ("codec_gsm", "GSM 06.10 13 kbit/s", {"name": "codec", "codecs": ["gsm"]}),
    ("mic_colouring", "microphone colouring (random EQ, low cut)", {"name": "mic_colouring"}),
    ("reverb", "reverb RT60 0.6 s, DRR 0 dB", {"name": "reverb", "rt60_s": [0.6, 0.6], "drr_db": [0, 0]}),
    (
        "reverb_compact",
        "reverb as in preset compact, RT60 0.5 s",
        {
            "name": "reverb",
            "rt60_s": [0.5, 0.5],
            "drr_db": [20 * np.log10(2.0)] * 2,
            "predelay_ms": [0, 0],
            "length_rt60": 1.0,
            "damping": False,
            "keep_level": False,
        },
    ),
    ("noise_pink", "pink noise, 10 dB SNR", {"name": "noise", "snr_db": [10, 10], "colours": ["pink"]}),
    ("noise_white", "white noise, 20 dB SNR", {"name": "noise", "snr_db": [20, 20], "colours": ["white"]}),
    ("gain", "gain -12 dB", {"name": "gain", "gain_db": [-12, -12]}),
    (
        "gain_normalise",
        "gain +12 dB, normalised",
        {"name": "gain", "gain_db": [12, 12], "limit": "normalise"},
    ),
    ("clipping", "clipping, +8 dB drive", {"name": "clipping", "overdrive_db": [8, 8]}),
    ("band_limit", "band limit: 8 kHz recording", {"name": "band_limit", "rates": [8000]}),
]

VMIN_DB, VMAX_DB = -130.0, -40.0


def speechlike(duration_s: float = 2.5, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A deterministic speech-like signal: voiced syllables with moving formants and unvoiced bursts."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 120.0 + 40.0 * np.sin(2 * np.pi * 0.7 * t) + 15.0 * np.sin(2 * np.pi * 3.1 * t)
    phase = np.cumsum(f0) / sample_rate
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal period
    source = signal.lfilter([1.0], [1.0, -0.95], pulses)  # glottal roll-off
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410)]
    seg = n // len(vowels)
    voiced = np.zeros(n)
    for i, formants in enumerate(vowels):
        sl = slice(i * seg, (i + 1) * seg if i < len(vowels) - 1 else n)
        y = source[sl]
        for k, fc in enumerate(formants):
            bw = 80.0 + 40.0 * k
            r = np.exp(-np.pi * bw / sample_rate)
            a = [1.0, -2 * r * np.cos(2 * np.pi * fc / sample_rate), r * r]
            y = signal.lfilter([1.0 - r], a, y) * (1.0 if k == 0 else 1.5)
        voiced[sl] = y
    syll = np.clip(np.sin(np.pi * (t * 4.0 % 1.0)) ** 0.6, 0, 1)  # four syllables per second
    noise = rng.standard_normal(n)
    sos = signal.butter(4, [3000, 7000], btype="bandpass", fs=sample_rate, output="sos")
    fric = signal.sosfilt(sos, noise) * ((t * 4.0 % 1.0) > 0.85)
    x = voiced * syll / (np.max(np.abs(voiced)) + 1e-9) + 0.15 * fric
    x[: int(0.1 * sample_rate)] *= np.linspace(0, 1, int(0.1 * sample_rate))
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def _spectrogram(ax: Any, y: np.ndarray, title: str) -> None:
    f, tt, p = signal.spectrogram(y, fs=SAMPLE_RATE, nperseg=512, noverlap=384)
    ax.pcolormesh(
        tt, f / 1000.0, 10 * np.log10(p + 1e-12), vmin=VMIN_DB, vmax=VMAX_DB, shading="auto", cmap="magma"
    )
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("kHz", fontsize=8)
    ax.tick_params(labelsize=7)


def _save(fig: Any, path: Path, dpi: int) -> None:
    """Save small: a 64-colour palette PNG (spectrograms need no more), written atomically."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    img = Image.open(buf).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    tmp = path.with_name(path.name + ".tmp")
    img.save(tmp, format="PNG", optimize=True)
    tmp.replace(path)


def demo(out_dir: Path, input_path: Path | None = None, seed: int = 0, overview: bool = False) -> list[Path]:
    """Write ``<stem>.png`` (before | after) per augmentation in :data:`PANELS`, ``preset_<name>.png`` (three
    random draws per preset) and, with ``overview``, all of them on one page in ``augmentations.png``;
    returns the paths written.

    A codec this machine cannot run is reported and left out, not an error.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.audio_io import read_audio
    from training.augment.codecs import backend_for
    from training.augment.presets import build_augmenter

    if input_path is not None:
        x, _ = read_audio(input_path, sample_rate=SAMPLE_RATE)
        x = x[: int(4 * SAMPLE_RATE)]
        source = input_path.name
    else:
        x = speechlike()
        source = "generated speech-like test signal"
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    panels: list[tuple[str, np.ndarray]] = [("original", x)]
    for stem, title, entry in PANELS:
        missing = [c for c in entry.get("codecs", []) if backend_for(c) is None]
        if missing:
            print(f"{title}: skipped, codec {', '.join(missing)} unavailable on this machine")
            continue
        aug, _ = build_augmentation(entry)
        y = aug(x, SAMPLE_RATE, np.random.default_rng(seed))
        panels.append((title, y))
        fig, axes = plt.subplots(1, 2, figsize=(9, 2.3), sharex=True, sharey=True)
        _spectrogram(axes[0], x, "before")
        _spectrogram(axes[1], y, f"after: {title}")
        fig.tight_layout()
        written.append(out_dir / f"{stem}.png")
        _save(fig, written[-1], dpi=60)
        plt.close(fig)
    for preset in ("full", "compact"):
        augmenter = build_augmenter({"preset": preset}, SAMPLE_RATE, seed)
        assert augmenter is not None
        fig, axes = plt.subplots(1, 4, figsize=(13, 2.3), sharex=True, sharey=True)
        _spectrogram(axes[0], x, "before")
        for k, ax in enumerate(axes[1:]):
            _spectrogram(ax, augmenter(x, np.random.default_rng([seed, k])), f"preset {preset}: draw {k + 1}")
        fig.tight_layout()
        written.append(out_dir / f"preset_{preset}.png")
        _save(fig, written[-1], dpi=60)
        plt.close(fig)
    if not overview:
        return written
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(13, 1.9 * rows), sharex=True, sharey=True)
    for ax, (title, y) in zip(axes.flat, panels, strict=False):
        _spectrogram(ax, y, title)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(f"training.augment: each augmentation alone, on {source}", fontsize=11)
    fig.tight_layout()
    written.append(out_dir / "augmentations.png")
    _save(fig, written[-1], dpi=50)
    plt.close(fig)
    return written


def codecs_report() -> str:
    """One line per codec: the back end that runs it here, or why none can."""
    from training.augment.codecs import CODECS, codec_status

    lines = []
    for name, (backend, why) in codec_status().items():
        spec = CODECS[name]
        rates = "/".join(f"{b / 1000:g}" for b in spec.bitrates)
        state = f"available ({backend})" if backend else f"UNAVAILABLE: {why}"
        lines.append(f"{name:8s} {spec.rate / 1000:g} kHz, {rates} kbit/s: {state}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.augment")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="before/after spectrograms of each augmentation and preset, one PNG each")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--input", type=Path, default=None, help="a clip to use instead of the generated signal")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--overview", action="store_true", help="also every augmentation on one page")
    sub.add_parser("codecs", help="which codecs this machine can run, and through which back end")
    args = parser.parse_args(argv)
    if args.command == "codecs":
        print(codecs_report())
        return 0
    from training.audio_io import AudioReadError

    try:
        written = demo(args.out, args.input, args.seed, args.overview)
    except AudioReadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(written)} pictures in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
