"""Audio reading and codec round trips used by the AntiDeepfake tools (mono float32 at 16 kHz).

Kept inside this package so the detector's training and evaluation depend only on soundfile, soxr and (for
G.722 and formats libsndfile cannot open) the ffmpeg command. Errors name the file, so a long evaluation can
skip a bad file and report it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from training.antideepfake.architectures import SAMPLE_RATE


class AudioReadError(RuntimeError):
    """A file could not be used as audio; the message names the file and the reason."""


class CodecError(RuntimeError):
    """An ffmpeg codec round trip failed (ffmpeg or the codec missing)."""


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if rate_in == rate_out:
        return x
    return soxr.resample(x, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def _ffmpeg_decode(path: Path) -> tuple[np.ndarray, int]:
    if shutil.which("ffmpeg") is None:
        raise AudioReadError(f"{path}: libsndfile cannot read this format and ffmpeg is not installed")
    fmt = ["-f", "g722"] if path.suffix.lower() == ".g722" else []
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *fmt, "-i", str(path)]
    cmd += ["-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:1"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioReadError(f"{path}: not readable as audio ({reason[-1] if reason else 'ffmpeg failed'})")
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32), SAMPLE_RATE


def load_audio(path: str | Path) -> np.ndarray:
    """Mono float32 at 16 kHz (channels averaged, as AntiDeepfake does); clear errors for bad files."""
    p = Path(path)
    if not p.is_file():
        raise AudioReadError(f"{p}: no such audio file")
    if p.stat().st_size == 0:
        raise AudioReadError(f"{p}: empty file")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
        x = data.mean(axis=1)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        x, rate = _ffmpeg_decode(p)
    if x.size == 0:
        raise AudioReadError(f"{p}: contains no samples")
    if not np.all(np.isfinite(x)):
        raise AudioReadError(f"{p}: contains NaN or infinite samples")
    return resample(x, int(rate), SAMPLE_RATE)


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) >= n:
        return x[:n]
    return np.pad(x, (0, n - len(x)))


# G.711 mu-law, the ITU-T reference algorithm vectorised (exact, and audioop is gone from Python 3.13).
_BIAS, _CLIP = 0x84, 32635


def mulaw_encode(x: np.ndarray) -> np.ndarray:
    pcm = np.clip(np.round(np.clip(x, -1.0, 1.0) * 32768.0), -32768, 32767).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    mag = np.minimum(np.abs(pcm), _CLIP) + _BIAS
    exponent = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 7, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    u = ~codes.astype(np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mag = ((((u & 0x0F) << 3) + _BIAS) << exponent) - _BIAS
    return (np.where(u & 0x80, -mag, mag) / 32768.0).astype(np.float32)


def mulaw_8k_roundtrip(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Telephone channel: to 8 kHz, G.711 mu-law encode/decode, back to ``sample_rate``; same length."""
    narrow = mulaw_decode(mulaw_encode(resample(x, sample_rate, 8000)))
    return fit_length(resample(narrow, 8000, sample_rate), len(x))


def g722_roundtrip(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Wideband VoIP channel: G.722 encode/decode through ffmpeg; same length."""
    if shutil.which("ffmpeg") is None:
        raise CodecError("ffmpeg is not installed; the G.722 channel augmentation needs it")
    base = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
    pcm = (np.clip(x, -1.0, 32767 / 32768) * 32768.0).round().astype("<i2").tobytes()
    enc = subprocess.run(
        base
        + ["-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0", "-ar", "16000"]
        + ["-c:a", "g722", "-f", "g722", "pipe:1"],
        input=pcm,
        capture_output=True,
        check=False,
    )
    if enc.returncode != 0 or not enc.stdout:
        raise CodecError(f"ffmpeg could not encode G.722: {enc.stderr.decode(errors='replace').strip()}")
    dec = subprocess.run(
        base + ["-f", "g722", "-i", "pipe:0", "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "pipe:1"],
        input=enc.stdout,
        capture_output=True,
        check=False,
    )
    if dec.returncode != 0:
        raise CodecError(f"ffmpeg could not decode G.722: {dec.stderr.decode(errors='replace').strip()}")
    return fit_length(np.frombuffer(dec.stdout, dtype="<f4").astype(np.float32), len(x))
