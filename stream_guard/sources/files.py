"""Audio files as streams: discovery, validation and block reading (soundfile), plus a thin asyncio pacer.

Everything that can go wrong with a user's file is a :class:`FileSourceError` whose message names the file, so
the command line can report it in one line and move on to the next file. Any sample rate, channel count and
format libsndfile reads is accepted; the stream core resamples and mixes.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

#: Extensions picked up when a directory is scanned (files named explicitly are tried whatever their name).
AUDIO_EXTENSIONS = frozenset(
    {
        ".wav",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".snd",
        ".caf",
        ".w64",
        ".rf64",
        ".sph",
        ".nist",
        ".voc",
        ".wve",
    }
)

#: Longest file accepted by default: a day of audio. Longer is almost certainly a mistake (or a corrupt
# header).
DEFAULT_MAX_DURATION_S = 24 * 3600.0

#: Largest channel count accepted by default; more is a corrupt header, not speech.
MAX_CHANNELS = 64


class FileSourceError(Exception):
    """A file cannot be streamed; the message starts with the file's path."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True)
class AudioFileInfo:
    """What the header of an audio file says."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def discover(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[FileSourceError]]:
    """Expand the command line's FILE|DIR arguments into files, in a stable order.

    Directories are walked recursively and contribute the files whose extension is in
    :data:`AUDIO_EXTENSIONS`; files given explicitly are kept whatever their extension (the header decides).
    Missing paths and empty directories come back as errors instead of stopping the scan, so one typo does not
    cost the whole batch.
    """
    found: list[Path] = []
    errors: list[FileSourceError] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(path)

    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            before = len(found)
            for root, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    candidate = Path(root) / name
                    if candidate.suffix.lower() in AUDIO_EXTENSIONS:
                        add(candidate)
            if len(found) == before:
                errors.append(FileSourceError(path, "directory contains no audio files"))
        elif path.exists():
            add(path)
        else:
            errors.append(FileSourceError(path, "no such file or directory"))
    return found, errors


def probe(path: str | os.PathLike[str], max_duration_s: float = DEFAULT_MAX_DURATION_S) -> AudioFileInfo:
    """Read and check a file's header: readable, not empty, not absurdly long. Raises FileSourceError."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FileSourceError(path, f"cannot open ({exc.strerror or exc})") from None
    if not path.is_file():
        raise FileSourceError(path, "is not a regular file")
    if size == 0:
        raise FileSourceError(path, "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise FileSourceError(path, "permission denied")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise FileSourceError(path, f"not a readable audio file ({_libsndfile_reason(exc)})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise FileSourceError(path, "contains no audio samples")
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise FileSourceError(path, f"has {info.channels} channels (at most {MAX_CHANNELS} supported)")
    duration = info.frames / info.samplerate
    if duration > max_duration_s:
        raise FileSourceError(
            path,
            f"is too long ({_hms(duration)} of audio; the limit is {_hms(max_duration_s)}, "
            "see --max-duration)",
        )
    return AudioFileInfo(
        path=path,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        format=str(info.format),
        subtype=str(info.subtype),
    )


def read_blocks(info: AudioFileInfo, block_frames: int) -> Iterator[np.ndarray]:
    """Yield float32 ``[frames, channels]`` blocks of a probed file.

    Non-finite samples (NaN, inf; possible in float WAVs) raise FileSourceError naming the time where they
    start, rather than silently poisoning scores. A file that ends before its header said is accepted (what
    was read is scored); a read error midway raises FileSourceError.
    """
    if block_frames < 1:
        raise ValueError("block_frames must be >= 1")
    position = 0
    try:
        with sf.SoundFile(str(info.path)) as fh:
            while True:
                block = fh.read(block_frames, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                if not np.isfinite(block).all():
                    bad = int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
                    at = (position + bad) / info.sample_rate
                    raise FileSourceError(
                        info.path, f"contains NaN or infinite samples (first at {at:.3f} s)"
                    )
                position += block.shape[0]
                yield block
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise FileSourceError(
            info.path, f"read error after {position / info.sample_rate:.2f} s ({_libsndfile_reason(exc)})"
        ) from None


async def stream_blocks(
    info: AudioFileInfo, block_s: float = 0.1, realtime: bool = False
) -> AsyncIterator[np.ndarray]:
    """Async blocks of a file, optionally paced to wall-clock time (``realtime``), for feeding an engine
    stream.

    Reading a block of a local file takes microseconds, so it stays on the loop; the loop is yielded to after
    each block so that many files can stream concurrently.
    """
    block_frames = max(1, int(round(block_s * info.sample_rate)))
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    for block in read_blocks(info, block_frames):
        if realtime:
            due = start + sent / info.sample_rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        yield block
        sent += block.shape[0]
        await asyncio.sleep(0)


def _libsndfile_reason(exc: BaseException) -> str:
    text = str(exc)
    # soundfile prefixes the path ("Error opening 'x.wav': Format not recognised."); keep only the reason.
    if ": " in text:
        text = text.rsplit(": ", 1)[-1]
    return text.strip().rstrip(".") or type(exc).__name__


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return str(seconds)
    h, rem = divmod(int(round(seconds)), 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"
