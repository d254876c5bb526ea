"""Lossy speech codecs for augmentation: which are usable on this machine, and one round trip per call.

Each codec can run through up to three back ends, tried in this order: PyAV (ffmpeg's libraries in-process,
tens of milliseconds per crop), libsndfile through :mod:`soundfile` (in-process; the only in-process GSM 06.10
here, since PyAV's wheels lack libgsm) and the ``ffmpeg`` command (two processes per call, ~0.2-0.5 s). Which
of them work depends on how PyAV, libsndfile and ffmpeg were built, so :func:`codec_status` probes each codec
once per process on a short test tone and remembers the first back end that round-trips it. A chain built
from a config drops the codecs that no back end can run and says so once (see
:func:`training.augment.presets.build_augmenter`), instead of failing on the first clip that draws one.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import numpy as np

from training.audio_io import (
    CodecError,
    codec_roundtrip,
    ffmpeg_available,
    ffmpeg_roundtrip,
    fit_length,
    pyav_available,
    resample,
)


@dataclass(frozen=True)
class CodecSpec:
    """One codec: its ffmpeg/PyAV encoder, the rate it runs at and its low bitrates.

    ``container`` is the ffmpeg muxer for the command-line back end; ``soundfile`` the libsndfile (format,
    subtype) pair when libsndfile implements the codec itself; ``fixed_rate`` marks codecs with a single
    bitrate (G.722 at 64 kbit/s, GSM 06.10 at 13 kbit/s), to which the ffmpeg command gets no bitrate option.
    """

    encoder: str
    rate: int
    bitrates: tuple[int, ...]
    container: str
    soundfile: tuple[str, str] | None = None
    fixed_rate: bool = False


#: codec name -> how to run it. Bitrates are in bit/s; one is drawn per call.
CODECS: dict[str, CodecSpec] = {
    "g722": CodecSpec("g722", 16000, (64000,), "g722", fixed_rate=True),
    "opus": CodecSpec("libopus", 16000, (6000, 8000, 12000, 16000), "ogg"),
    "opus_nb": CodecSpec("libopus", 8000, (6000, 8000), "ogg"),
    "amrnb": CodecSpec("libopencore_amrnb", 8000, (4750, 5900, 7950, 12200), "amr"),
    "gsm": CodecSpec("libgsm", 8000, (13000,), "gsm", soundfile=("WAV", "GSM610"), fixed_rate=True),
}

BACKENDS = ("pyav", "soundfile", "ffmpeg")


def _soundfile_roundtrip(x: np.ndarray, sample_rate: int, spec: CodecSpec) -> np.ndarray:
    import soundfile as sf

    assert spec.soundfile is not None
    fmt, subtype = spec.soundfile
    narrow = resample(x, sample_rate, spec.rate)
    buf = io.BytesIO()
    try:
        sf.write(buf, np.clip(narrow, -1.0, 1.0), spec.rate, format=fmt, subtype=subtype)
        buf.seek(0)
        y, rate = sf.read(buf, dtype="float32")
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise CodecError(f"libsndfile could not run {fmt}/{subtype}: {exc}") from exc
    return fit_length(resample(np.asarray(y, dtype=np.float32), int(rate), sample_rate), x.shape[0])


def render(x: np.ndarray, sample_rate: int, codec: str, bitrate: int, backend: str) -> np.ndarray:
    """One round trip of ``x`` through ``codec`` at ``bitrate`` on ``backend``; same length out.

    Raises :class:`~training.audio_io.CodecError` when the back end cannot run the codec.
    """
    spec = CODECS[codec]
    x = np.asarray(x, dtype=np.float32)
    rate = None if spec.fixed_rate else int(bitrate)
    if backend == "pyav":  # PyAV ignores the bitrate of fixed-rate codecs
        return codec_roundtrip(x, sample_rate, spec.encoder, codec_rate=spec.rate, bitrate=int(bitrate))
    if backend == "soundfile":
        if spec.soundfile is None:
            raise CodecError(f"libsndfile has no {codec} codec")
        return _soundfile_roundtrip(x, sample_rate, spec)
    if backend == "ffmpeg":
        return ffmpeg_roundtrip(
            x,
            sample_rate,
            spec.encoder,
            container=spec.container,
            codec_rate=spec.rate,
            bitrate=None if rate is None else str(rate),
        )
    raise ValueError(f"unknown codec back end {backend!r}; known: {BACKENDS}")


def _candidates(codec: str) -> list[str]:
    spec = CODECS[codec]
    out = []
    if pyav_available():
        out.append("pyav")
    if spec.soundfile is not None:
        out.append("soundfile")
    if ffmpeg_available():
        out.append("ffmpeg")
    return out


@functools.cache
def codec_status() -> dict[str, tuple[str | None, str]]:
    """codec name -> (back end that runs it or None, why not / which back end). Probed once per process."""
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * np.arange(3200) / 16000.0)).astype(np.float32)
    status: dict[str, tuple[str | None, str]] = {}
    for name, spec in CODECS.items():
        errors = []
        for backend in _candidates(name):
            try:
                y = render(tone, 16000, name, spec.bitrates[0], backend)
            except CodecError as exc:
                errors.append(f"{backend}: {str(exc).splitlines()[0][:120]}")
                continue
            if y.shape == tone.shape and np.all(np.isfinite(y)) and float(np.max(np.abs(y))) > 0.01:
                status[name] = (backend, backend)
                break
            errors.append(f"{backend}: silent or malformed output")
        else:
            if not errors:
                errors.append("neither PyAV, libsndfile nor the ffmpeg command offers it")
            status[name] = (None, "; ".join(errors))
    return status


def backend_for(codec: str) -> str | None:
    """The back end that runs ``codec`` here, or None when none can."""
    return codec_status()[codec][0]


def unavailable_codecs() -> dict[str, str]:
    """codec name -> reason, for every codec no back end can run on this machine."""
    return {name: why for name, (backend, why) in codec_status().items() if backend is None}


__all__ = ["BACKENDS", "CODECS", "CodecSpec", "backend_for", "codec_status", "render", "unavailable_codecs"]
