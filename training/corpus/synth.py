"""Synthetic speech for validation and for the supervised companion: classic TTS engines from Debian and
vocoder resyntheses of held-out real clips.

Every engine reads texts of its own language taken from the Asterisk transcripts, so synthetic and real clips
say similar things (IVR prompts) and content cannot separate the classes.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from training.audio_io import AudioReadError, read_audio


class SynthesisError(RuntimeError):
    """A synthesizer is missing or failed; the message names the system and voice."""


@dataclass(frozen=True)
class TTSVoice:
    """One voice of a TTS engine. ``language`` selects the texts it reads."""

    system: str
    voice: str
    language: str
    engine: str  # espeak | flite | festival

    @property
    def speaker(self) -> str:
        return f"{self.system}-{self.voice}"


ESPEAK_VOICES: tuple[tuple[str, str], ...] = (
    ("en-us", "en"),
    ("en-us+f3", "en"),
    ("en-us+m3", "en"),
    ("en-gb", "en"),
    ("en-gb+f3", "en"),
    ("en-gb+m3", "en"),
    ("es", "es"),
    ("es+f3", "es"),
    ("fr-fr", "fr"),
    ("fr-fr+f3", "fr"),
    ("it", "it"),
    ("it+m3", "it"),
    ("ru", "ru"),
    ("ru+f3", "ru"),
)


def tts_voices() -> list[TTSVoice]:
    voices = [TTSVoice("espeak", v, lang, "espeak") for v, lang in ESPEAK_VOICES]
    voices += [TTSVoice(f"flite_{v}", v, "en", "flite") for v in ("kal16", "slt", "awb", "rms")]
    voices += [TTSVoice(f"festival_{v}", v, "en", "festival") for v in ("kal", "ked")]
    return voices


def engine_available(engine: str) -> bool:
    exe = {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave"}[engine]
    return shutil.which(exe) is not None


def clean_text(text: str, max_words: int = 28) -> str:
    """Make a transcript line speakable and short: drop bracketed notes, ellipses, cap at ``max_words``
    (cut at a sentence end when possible) so one clip stays a few seconds long like the real prompts."""
    text = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", text)
    text = text.replace("...", " ").replace("\u2026", " ").replace('"', " ")
    text = re.sub(r"\s+", " ", text).strip(" .,;-")
    words = text.split()
    if len(words) > max_words:
        cut = " ".join(words[:max_words])
        m = re.search(r"^(.*[.!?])\s", cut + " ")
        text = m.group(1) if m and len(m.group(1).split()) >= 4 else cut
    return text.strip()


@functools.lru_cache(maxsize=1)
def flite_voices() -> frozenset[str]:
    """Voices compiled into the installed flite (``flite -lv``)."""
    proc = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=False)
    listing = proc.stdout.split(":", 1)[-1]
    return frozenset(listing.split())


def synthesize(voice: TTSVoice, text: str, timeout_s: float = 60.0) -> tuple[np.ndarray, int]:
    """Render ``text`` with ``voice``; returns mono float32 and its rate."""
    if not engine_available(voice.engine):
        raise SynthesisError(f"{voice.speaker}: {voice.engine} is not installed")
    if voice.engine == "flite" and voice.voice not in flite_voices():
        # flite silently falls back to its default voice for an unknown name: refuse instead
        raise SynthesisError(
            f"{voice.speaker}: flite has no voice {voice.voice!r} (has {sorted(flite_voices())})"
        )
    with tempfile.TemporaryDirectory(prefix="sg-tts-") as tmp:
        out = Path(tmp) / "out.wav"
        if voice.engine == "espeak":
            cmd = ["espeak-ng", "-v", voice.voice, "-w", str(out), "--", text]
            stdin = None
        elif voice.engine == "flite":
            cmd = ["flite", "-voice", voice.voice, "-t", text, "-o", str(out)]
            stdin = None
        else:
            cmd = ["text2wave", "-eval", f"(voice_{voice.voice}_diphone)", "-o", str(out)]
            stdin = text.encode("utf-8")
        try:
            proc = subprocess.run(
                cmd,
                input=stdin,
                capture_output=True,
                timeout=timeout_s,
                check=False,
                env={**os.environ, "LC_ALL": "C.UTF-8"},
            )
        except subprocess.TimeoutExpired as exc:
            raise SynthesisError(f"{voice.speaker}: timed out after {timeout_s:.0f} s") from exc
        if proc.returncode != 0 or not out.is_file():
            msg = proc.stderr.decode(errors="replace").strip()[-300:]
            raise SynthesisError(f"{voice.speaker}: exit {proc.returncode}: {msg}")
        try:
            return read_audio(out)
        except AudioReadError as exc:
            raise SynthesisError(f"{voice.speaker}: produced unreadable audio ({exc})") from exc


# ----------------------------------------------------------------------------------------------------
# resyntheses of real clips


def _import_pyworld() -> ModuleType:
    """Import pyworld. Its ``__init__`` needs ``pkg_resources`` (gone from setuptools >= 81) only for a
    version string; when that fails, load the compiled extension directly."""
    try:
        return importlib.import_module("pyworld")
    except ModuleNotFoundError as exc:
        if exc.name != "pkg_resources":
            raise SynthesisError("world: pyworld is not installed (pip install pyworld)") from exc
    spec = importlib.util.find_spec("pyworld")
    if spec is None or not spec.submodule_search_locations:
        raise SynthesisError("world: pyworld is not installed (pip install pyworld)")
    pkg_dir = Path(next(iter(spec.submodule_search_locations)))
    for ext in pkg_dir.glob("pyworld*.so"):
        loader = importlib.machinery.ExtensionFileLoader("pyworld", str(ext))
        ext_spec = importlib.util.spec_from_file_location("pyworld", ext, loader=loader)
        if ext_spec is None:
            continue
        module = importlib.util.module_from_spec(ext_spec)
        loader.exec_module(module)
        return module
    raise SynthesisError(f"world: no compiled pyworld extension in {pkg_dir}")


def world_resynthesis(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """WORLD copy-synthesis: harvest F0, CheapTrick envelope, D4C aperiodicity, then synthesize."""
    pw = _import_pyworld()
    xd = np.ascontiguousarray(x, dtype=np.float64)
    f0, t = pw.harvest(xd, sample_rate, frame_period=5.0)
    sp = pw.cheaptrick(xd, f0, t, sample_rate)
    ap = pw.d4c(xd, f0, t, sample_rate)
    y = pw.synthesize(f0, sp, ap, sample_rate, frame_period=5.0)
    return np.asarray(y[: x.shape[0]], dtype=np.float32)


def griffinlim_resynthesis(x: np.ndarray, sample_rate: int, n_iter: int = 32) -> np.ndarray:
    """Griffin-Lim from an 80-band mel spectrogram (phase discarded), the classic neural-TTS-era vocoder
    stand-in: magnitude kept, phase re-estimated."""
    import librosa

    n_fft = 1024 if sample_rate > 16000 else 512
    hop = n_fft // 4
    mel_basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=80)
    mag = np.abs(librosa.stft(x.astype(np.float32), n_fft=n_fft, hop_length=hop))
    mel = mel_basis @ mag
    # Mel -> linear with the pseudo-inverse (librosa's default NNLS inversion is ~50x slower for no audible
    # gain).
    linear = np.maximum(np.linalg.pinv(mel_basis) @ mel, 0.0)
    y = librosa.griffinlim(linear, n_iter=n_iter, hop_length=hop, n_fft=n_fft, random_state=0)
    out = np.zeros(x.shape[0], dtype=np.float32)
    n = min(x.shape[0], y.shape[0])
    out[:n] = y[:n]
    return out


RESYNTHESIZERS = {"world": world_resynthesis, "griffinlim": griffinlim_resynthesis}
