"""Audio helpers shared by the corpus builder, augmentation and trainers.

Everything here works on float32 mono numpy arrays in [-1, 1]. Reading goes through soundfile first (WAV,
FLAC, Ogg Vorbis/Opus, ...) and falls back to ffmpeg for what libsndfile cannot open (raw G.722, odd
containers), so every source in the corpus is read by one function. Errors are :class:`AudioReadError` with
the file named, so a long build can report the file and carry on.

The processing steps (trim, level, dither) are the corpus' *shortcut removal*: they are applied identically
to real and synthetic clips so that silence, level and digital zeros cannot tell the classes apart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

__all__ = [
    "AudioReadError",
    "CodecError",
    "TrimConfig",
    "LevelConfig",
    "read_audio",
    "read_raw_pcm16",
    "resample",
    "to_mono",
    "trim_silence",
    "active_rms_dbfs",
    "normalize_level",
    "add_dither",
    "write_audio_atomic",
    "ffmpeg_available",
    "ffmpeg_roundtrip",
    "codec_roundtrip",
    "g722_roundtrip",
    "pyav_available",
    "mulaw_encode",
    "mulaw_decode",
    "alaw_encode",
    "alaw_decode",
    "g711_roundtrip",
    "fit_length",
]

#: One LSB of 16-bit PCM: stored clips are 16-bit, so dither is specified in these units.
LSB16 = 1.0 / 32768.0


class AudioReadError(RuntimeError):
    """A file could not be read as audio; the message names the file and the reason."""


class CodecError(RuntimeError):
    """An ffmpeg codec round trip failed (codec missing, ffmpeg missing, bad parameters)."""


# ----------------------------------------------------------------------------------------------------
# reading


def to_mono(x: np.ndarray) -> np.ndarray:
    """Average channels: ``[n]`` or ``[n, ch]`` -> float32 ``[n]``."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected audio of shape [n] or [n, channels], got {x.shape}")
    return x


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


def _ffmpeg_decode(path: Path, input_format: str | None, sample_rate: int | None) -> tuple[np.ndarray, int]:
    """Decode any file ffmpeg understands to mono float32 at its own (or the requested) rate."""
    if not ffmpeg_available():
        raise AudioReadError(f"{path}: soundfile cannot read it and ffmpeg is not installed")
    if sample_rate is None:
        sample_rate = _ffprobe_rate(path, input_format) or 16000
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
    if input_format:
        cmd += ["-f", input_format]
    cmd += ["-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "pipe:1"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioReadError(f"{path}: ffmpeg could not decode it ({msg[-1] if msg else 'no message'})")
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32), sample_rate


def _pyav_decode(path: Path, input_format: str) -> tuple[np.ndarray, int]:
    """Decode with PyAV in-process (no ffmpeg process start per file)."""
    import av

    try:
        with av.open(str(path), format=input_format) as container:
            stream = container.streams.audio[0]
            chunks = []
            rate = stream.rate or 16000
            for frame in container.decode(stream):
                arr = frame.to_ndarray()
                arr = arr.mean(axis=0) if arr.ndim == 2 and arr.shape[0] > 1 else arr.reshape(-1)
                scale = 32768.0 if np.issubdtype(arr.dtype, np.integer) else 1.0
                chunks.append(arr.astype(np.float32) / np.float32(scale))
                rate = frame.sample_rate
    except (av.error.FFmpegError, IndexError, ValueError) as exc:  # type: ignore[attr-defined]
        raise AudioReadError(f"{path}: could not decode as {input_format} ({exc})") from exc
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), int(rate)


def _ffprobe_rate(path: Path, input_format: str | None) -> int | None:
    if shutil.which("ffprobe") is None:
        return None
    cmd = [
        "ffprobe",
        "-v",
        "error",
        "-select_streams",
        "a:0",
        "-show_entries",
        "stream=sample_rate",
        "-of",
        "csv=p=0",
    ]
    if input_format:
        cmd += ["-f", input_format]
    proc = subprocess.run(cmd + [str(path)], capture_output=True, check=False, text=True)
    try:
        return int(proc.stdout.strip().splitlines()[0])
    except (ValueError, IndexError):
        return None


def read_raw_pcm16(path: str | os.PathLike[str], sample_rate: int) -> tuple[np.ndarray, int]:
    """Read headerless little-endian 16-bit mono PCM (codec2's ``.raw`` files)."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 2:
        raise AudioReadError(f"{path}: empty raw PCM file")
    x = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    return x, sample_rate


def read_audio(
    path: str | os.PathLike[str], *, input_format: str | None = None, sample_rate: int | None = None
) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32 and return ``(samples, rate)``.

    ``input_format`` forces an ffmpeg demuxer (``"g722"`` for Asterisk's headerless G.722 files, which
    soundfile cannot open); ``sample_rate`` resamples the result. Raises :class:`AudioReadError` naming the
    file for missing, empty, unreadable or non-finite audio.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioReadError(f"{path}: empty file")
    if input_format is None and path.suffix.lower() == ".g722":
        input_format = "g722"
    if input_format is not None:
        if pyav_available():
            x, sr = _pyav_decode(path, input_format)
        else:
            x, sr = _ffmpeg_decode(path, input_format, None)
    else:
        try:
            data, sr = sf.read(str(path), dtype="float32", always_2d=False)
            x = to_mono(data)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
            x, sr = _ffmpeg_decode(path, None, None)
    if x.size == 0:
        raise AudioReadError(f"{path}: contains no samples")
    if not np.all(np.isfinite(x)):
        raise AudioReadError(f"{path}: contains NaN or infinite samples")
    if sample_rate is not None and sr != sample_rate:
        x = resample(x, sr, sample_rate)
        sr = sample_rate
    return x.astype(np.float32, copy=False), int(sr)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """High-quality resampling (soxr VHQ); identity when the rates match."""
    x = np.asarray(x, dtype=np.float32)
    if rate_in == rate_out:
        return x
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
    return soxr.resample(x, rate_in, rate_out, quality="VHQ").astype(np.float32, copy=False)


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad to exactly ``n`` samples (codecs add a few samples of delay or padding)."""
    if x.shape[0] >= n:
        return x[:n]
    return np.concatenate([x, np.zeros(n - x.shape[0], dtype=x.dtype)])


# ----------------------------------------------------------------------------------------------------
# shortcut removal: trimming, level, dither


@dataclass(frozen=True)
class TrimConfig:
    """Energy-based trimming of leading and trailing silence.

    Frames of ``frame_ms`` (hop ``hop_ms``) whose RMS is more than ``threshold_db`` below the loudest frame of
    the clip are silence; the clip is cut to the first..last non-silent frame, keeping ``margin_ms`` of what
    lies outside (never adding audio). Relative to the clip's own peak so that quiet recordings trim like loud
    ones. Only the edges are cut: pauses inside speech are speech rhythm and stay.
    """

    threshold_db: float = 40.0
    frame_ms: float = 20.0
    hop_ms: float = 10.0
    margin_ms: float = 50.0


def _frame_rms_db(
    x: np.ndarray, sample_rate: int, frame_ms: float, hop_ms: float
) -> tuple[np.ndarray, int, int]:
    frame = max(1, int(round(sample_rate * frame_ms / 1000.0)))
    hop = max(1, int(round(sample_rate * hop_ms / 1000.0)))
    if x.shape[0] < frame:
        pad = np.zeros(frame, dtype=np.float32)
        pad[: x.shape[0]] = x
        x = pad
    n_frames = 1 + (x.shape[0] - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = x[idx].astype(np.float64)
    rms = np.sqrt(np.mean(frames * frames, axis=1) + 1e-20)
    return 20.0 * np.log10(rms), frame, hop


def trim_silence(x: np.ndarray, sample_rate: int, config: TrimConfig | None = None) -> np.ndarray:
    """Cut leading and trailing silence (see :class:`TrimConfig`); all-silent input returns an empty array."""
    cfg = config or TrimConfig()
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0 or float(np.max(np.abs(x))) == 0.0:
        return x[:0]
    db, frame, hop = _frame_rms_db(x, sample_rate, cfg.frame_ms, cfg.hop_ms)
    active = np.flatnonzero(db >= db.max() - cfg.threshold_db)
    margin = int(round(sample_rate * cfg.margin_ms / 1000.0))
    start = max(0, int(active[0]) * hop - margin)
    end = min(x.shape[0], int(active[-1]) * hop + frame + margin)
    return x[start:end]


def active_rms_dbfs(x: np.ndarray, sample_rate: int, gate_db: float = 30.0) -> float:
    """RMS level (dBFS) of the active part of a clip: frames within ``gate_db`` of the loudest frame.

    A simplified ITU-T P.56-style active level: pauses do not drag the level down, so a clip with long pauses
    is not made louder than a dense one.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0 or not np.any(x):
        return float("-inf")
    db, _, _ = _frame_rms_db(x, sample_rate, 20.0, 10.0)
    sel = db[db >= db.max() - gate_db]
    power = np.mean(10.0 ** (sel / 10.0))
    return float(10.0 * np.log10(power + 1e-20))


@dataclass(frozen=True)
class LevelConfig:
    """Level normalisation: active speech RMS to ``target_dbfs``, then the whole clip is scaled down (never
    limited sample-wise, which would distort) so its peak stays at or below ``peak_dbfs``."""

    target_dbfs: float = -26.0
    peak_dbfs: float = -1.0


def normalize_level(x: np.ndarray, sample_rate: int, config: LevelConfig | None = None) -> np.ndarray:
    cfg = config or LevelConfig()
    level = active_rms_dbfs(x, sample_rate)
    if not np.isfinite(level):
        return np.asarray(x, dtype=np.float32)
    y = np.asarray(x, dtype=np.float32) * np.float32(10.0 ** ((cfg.target_dbfs - level) / 20.0))
    peak = float(np.max(np.abs(y)))
    limit = 10.0 ** (cfg.peak_dbfs / 20.0)
    if peak > limit:
        y = y * np.float32(limit / peak)
    return y.astype(np.float32, copy=False)


def add_dither(x: np.ndarray, rng: np.random.Generator, lsb: float = 1.5) -> np.ndarray:
    """Add Gaussian noise of ``lsb`` 16-bit LSBs RMS (1.5 LSB is about -87 dBFS).

    Stored clips are 16-bit; 1.5 LSB survives quantisation, so no stored clip has runs of exact digital zeros
    (which would hit the floor of a log spectrum and mark the clip's origin).
    """
    x = np.asarray(x, dtype=np.float32)
    return (x + rng.standard_normal(x.shape[0]).astype(np.float32) * np.float32(lsb * LSB16)).astype(
        np.float32
    )


def write_audio_atomic(path: str | os.PathLike[str], x: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit FLAC/WAV (by suffix) through a temporary file and a rename, so a killed build never
    leaves a half-written clip that a resumed build would take as finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        sf.write(tmp, np.clip(x, -1.0, 1.0), sample_rate, format=fmt, subtype="PCM_16")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------------------------------
# codecs


def _pcm16_bytes(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 32767.0 / 32768.0) * 32768.0).round().astype("<i2").tobytes()


def ffmpeg_roundtrip(
    x: np.ndarray,
    sample_rate: int,
    codec: str,
    *,
    container: str,
    codec_rate: int | None = None,
    bitrate: str | None = None,
    extra: tuple[str, ...] = (),
) -> np.ndarray:
    """Encode with an ffmpeg codec and decode back to ``sample_rate``; output has the input's length.

    ``container`` is the ffmpeg muxer/demuxer used on the pipe (``g722``, ``gsm``, ``ogg``, ``wav``...);
    ``codec_rate`` the rate the codec runs at (e.g. 8000 for GSM). Raises :class:`CodecError` with ffmpeg's
    message when the codec is missing or refuses the parameters.
    """
    if not ffmpeg_available():
        raise CodecError("ffmpeg is not installed; the codec round trips need it")
    x = np.asarray(x, dtype=np.float32)
    base = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
    enc = base + ["-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0"]
    if codec_rate is not None:
        enc += ["-ar", str(codec_rate)]
    enc += ["-c:a", codec]
    if bitrate is not None:
        enc += ["-b:a", bitrate]
    enc += list(extra) + ["-f", container, "pipe:1"]
    p1 = subprocess.run(enc, input=_pcm16_bytes(x), capture_output=True, check=False)
    if p1.returncode != 0 or not p1.stdout:
        raise CodecError(
            f"ffmpeg could not encode with {codec}: {p1.stderr.decode(errors='replace').strip()}"
        )
    dec = base + [
        "-f",
        container,
        "-i",
        "pipe:0",
        "-f",
        "f32le",
        "-ac",
        "1",
        "-ar",
        str(sample_rate),
        "pipe:1",
    ]
    p2 = subprocess.run(dec, input=p1.stdout, capture_output=True, check=False)
    if p2.returncode != 0:
        raise CodecError(f"ffmpeg could not decode {codec}: {p2.stderr.decode(errors='replace').strip()}")
    y = np.frombuffer(p2.stdout, dtype="<f4").astype(np.float32)
    return fit_length(y, x.shape[0])


#: Decoder output delay of codecs run in-process, in seconds (measured against the input by cross-correlation:
#: Opus' 312-sample pre-skip at 48 kHz, AMR-NB's 40 samples at 8 kHz). G.722's 22-sample QMF delay is left in,
#: as ffmpeg's command line leaves it.
_CODEC_DELAY_S = {"libopus": 312 / 48000, "opus": 312 / 48000, "libopencore_amrnb": 40 / 8000}


def pyav_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def codec_roundtrip(
    x: np.ndarray, sample_rate: int, codec: str, *, codec_rate: int, bitrate: int | None = None
) -> np.ndarray:
    """Encode and decode in-process with PyAV (ffmpeg's libraries), output at ``sample_rate`` with the input's
    length.

    About 30x faster than :func:`ffmpeg_roundtrip`, which starts two ffmpeg processes per call; the output is
    bit-identical for G.722. Raises :class:`CodecError` if PyAV is missing or lacks the codec (PyAV's wheels
    have g722, libopus and libopencore_amrnb, not libgsm: use :func:`ffmpeg_roundtrip` for GSM).
    """
    try:
        import av
    except ImportError as exc:
        raise CodecError("PyAV (the `av` package) is not installed") from exc
    x = np.asarray(x, dtype=np.float32)
    y = resample(x, sample_rate, codec_rate)
    try:
        enc = av.CodecContext.create(codec, "w")
        enc.sample_rate = codec_rate
        enc.layout = "mono"
        enc.format = "s16"
        if bitrate is not None:
            enc.bit_rate = int(bitrate)
        enc.open()
        fs = enc.frame_size or 1024
        pcm = np.concatenate([y, np.zeros((-y.shape[0]) % fs, dtype=np.float32)])
        pcm = (np.clip(pcm, -1.0, 32767.0 / 32768.0) * 32768.0).round().astype(np.int16)
        packets = []
        for i in range(0, pcm.shape[0], fs):
            frame = av.AudioFrame.from_ndarray(pcm[None, i : i + fs], format="s16", layout="mono")
            frame.sample_rate = codec_rate
            frame.pts = i
            packets += enc.encode(frame)
        packets += enc.encode(None)
        dec = av.CodecContext.create(codec, "r")
        dec.sample_rate = codec_rate
        dec.layout = "mono"
        chunks: list[np.ndarray] = []
        out_rate = codec_rate
        for packet in [*packets, None]:
            for frame in dec.decode(packet):
                arr = frame.to_ndarray().reshape(-1)
                scale = 32768.0 if np.issubdtype(arr.dtype, np.integer) else 1.0
                chunks.append(arr.astype(np.float32) / np.float32(scale))
                out_rate = frame.sample_rate
    except (av.error.FFmpegError, ValueError) as exc:  # type: ignore[attr-defined]
        raise CodecError(f"PyAV could not run codec {codec} at {codec_rate} Hz: {exc}") from exc
    z = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    skip = int(round(_CODEC_DELAY_S.get(codec, 0.0) * out_rate))
    z = resample(z[skip:], out_rate, sample_rate)
    return fit_length(z, x.shape[0])


def g722_roundtrip(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """G.722 (64 kbit/s, 16 kHz) round trip: in-process when PyAV is there, else with the ffmpeg command."""
    if sample_rate != 16000:
        y = g722_roundtrip(resample(x, sample_rate, 16000), 16000)
        return fit_length(resample(y, 16000, sample_rate), np.asarray(x).shape[0])
    if pyav_available():
        return codec_roundtrip(x, 16000, "g722", codec_rate=16000)
    return ffmpeg_roundtrip(x, 16000, "g722", container="g722")


# G.711 tables: the ITU-T reference algorithms, vectorised. Exact and tiny, and audioop is gone from Python
# 3.13.
_MULAW_BIAS = 0x84
_MULAW_CLIP = 32635


def mulaw_encode(x: np.ndarray) -> np.ndarray:
    """float32 [-1, 1] -> G.711 mu-law bytes (uint8)."""
    pcm = (np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0) * 32768.0).round().astype(np.int32)
    pcm = np.clip(pcm, -32768, 32767)
    sign = np.where(pcm < 0, 0x80, 0x00)
    mag = np.minimum(np.abs(pcm), _MULAW_CLIP) + _MULAW_BIAS
    exponent = np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


def _mulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + _MULAW_BIAS) << exponent) - _MULAW_BIAS
    return (np.where(sign != 0, -mag, mag) / 32768.0).astype(np.float32)


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    mag = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return (np.where(sign != 0, mag, -mag) / 32768.0).astype(np.float32)


_MULAW_DECODE = _mulaw_table()
_ALAW_DECODE = _alaw_table()


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    return _MULAW_DECODE[np.asarray(codes, dtype=np.uint8)]


def alaw_encode(x: np.ndarray) -> np.ndarray:
    """float32 [-1, 1] -> G.711 A-law bytes (uint8)."""
    pcm = (np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0) * 32768.0).round().astype(np.int32)
    pcm = np.clip(pcm, -32768, 32767)
    sign = np.where(pcm >= 0, 0x80, 0x00)
    mag = np.minimum(np.where(pcm >= 0, pcm, -pcm - 1), 32767) >> 3  # 13-bit magnitude
    exponent = np.clip(np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4, 0, 7)
    mantissa = np.where(exponent == 0, mag >> 1, mag >> exponent) & 0x0F
    return ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8)


def alaw_decode(codes: np.ndarray) -> np.ndarray:
    return _ALAW_DECODE[np.asarray(codes, dtype=np.uint8)]


def g711_roundtrip(x: np.ndarray, sample_rate: int, law: str = "mulaw") -> np.ndarray:
    """Telephone channel: resample to 8 kHz, G.711 encode/decode, back to ``sample_rate``. Same length out."""
    if law not in ("mulaw", "alaw"):
        raise ValueError(f"law must be 'mulaw' or 'alaw', got {law!r}")
    narrow = resample(x, sample_rate, 8000)
    narrow = mulaw_decode(mulaw_encode(narrow)) if law == "mulaw" else alaw_decode(alaw_encode(narrow))
    return fit_length(resample(narrow, 8000, sample_rate), np.asarray(x).shape[0])
