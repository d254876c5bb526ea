"""``python -m training.augment demo --out DIR [--input FILE]``: one spectrogram per augmentation of one clip.

Without ``--input`` the clip is a speech-like test signal made here (a glottal pulse train with a gliding
pitch through moving formant resonators, with syllable envelopes and fricative bursts), so the picture carries
no third-party audio.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import signal

SAMPLE_RATE = 16000

#: (title, config entry) per panel; each applied alone with p = 1 and a fixed seed
PANELS: list[tuple[str, dict]] = [
    ("telephone band 300-3400 Hz", {"name": "telephone_band", "low_hz": [300, 300], "high_hz": [3400, 3400]}),
    ("mu-law 8 kHz", {"name": "g711", "law": "mulaw"}),
    ("A-law 8 kHz", {"name": "g711", "law": "alaw"}),
    ("G.722 64 kbit/s", {"name": "codec", "codecs": ["g722"]}),
    ("Opus 6 kbit/s", {"name": "codec", "codecs": ["opus"], "bitrates": {"opus": [6000]}}),
    ("AMR-NB 4.75 kbit/s", {"name": "codec", "codecs": ["amrnb"], "bitrates": {"amrnb": [4750]}}),
    ("GSM 06.10", {"name": "codec", "codecs": ["gsm"]}),
    ("microphone colouring", {"name": "mic_colouring"}),
    ("reverb RT60 0.6 s", {"name": "reverb", "rt60_s": [0.6, 0.6], "drr_db": [0, 0]}),
    ("pink noise, 10 dB SNR", {"name": "noise", "snr_db": [10, 10], "colours": ["pink"]}),
    ("gain -12 dB", {"name": "gain", "gain_db": [-12, -12]}),
    ("clipping +8 dB drive", {"name": "clipping", "overdrive_db": [8, 8]}),
    ("band limit 8 kHz rate", {"name": "band_limit", "rates": [8000]}),
]


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


def demo(out_dir: Path, input_path: Path | None = None, seed: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.audio_io import CodecError, read_audio
    from training.augment.chain import build_augmentation

    if input_path is not None:
        x, _ = read_audio(input_path, sample_rate=SAMPLE_RATE)
        x = x[: int(4 * SAMPLE_RATE)]
        source = input_path.name
    else:
        x = speechlike()
        source = "generated speech-like test signal"
    panels: list[tuple[str, np.ndarray]] = [("original", x)]
    for title, entry in PANELS:
        aug, _ = build_augmentation(entry)
        try:
            panels.append((title, aug(x, SAMPLE_RATE, np.random.default_rng(seed))))
        except CodecError as exc:
            print(f"{title}: skipped ({exc})")
    cols = 2
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(11, 1.9 * rows), sharex=True, sharey=True)
    for ax, (title, y) in zip(axes.flat, panels, strict=False):
        f, tt, s = signal.spectrogram(y, fs=SAMPLE_RATE, nperseg=512, noverlap=384)
        ax.pcolormesh(
            tt, f / 1000.0, 10 * np.log10(s + 1e-12), vmin=-130, vmax=-40, shading="auto", cmap="magma"
        )
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("kHz", fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(f"training.augment: each augmentation alone, on {source}", fontsize=11)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "augmentations.png"
    fig.savefig(out, dpi=60)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.augment")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="write augmentations.png: a spectrogram per augmentation")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--input", type=Path, default=None, help="a clip to use instead of the generated signal")
    d.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from training.audio_io import AudioReadError

    try:
        out = demo(args.out, args.input, args.seed)
    except AudioReadError as exc:
        print(f"error: {exc}")
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
