"""Audio sample formats: decode whatever a source delivers into float32 ``[frames, channels]``.

Sources hand the core raw PCM in the format their transport uses: 16-bit little-endian PCM (most SDKs, L16),
float32 (microphones, numpy callers), or G.711 mu-law / A-law bytes (telephony). ``audioop`` left the standard
library in Python 3.13, so G.711 is done here with numpy lookup tables built from the ITU-T reference
algorithm (the same one ``audioop`` used); they are exact, not approximations.

Byte streams may split a sample (or a multi-channel frame) across two chunks, so decoding is stateful:
:class:`Decoder` keeps the partial frame until the next chunk arrives. :func:`decode` is the stateless version
for whole buffers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Union

import numpy as np

Encoding = Literal["pcm16", "float32", "mulaw", "alaw"]
ENCODINGS: tuple[str, ...] = ("pcm16", "float32", "mulaw", "alaw")
_BYTES_PER_SAMPLE = {"pcm16": 2, "float32": 4, "mulaw": 1, "alaw": 1}
_ALIASES = {
    "s16": "pcm16",
    "s16le": "pcm16",
    "int16": "pcm16",
    "l16": "pcm16",
    "linear16": "pcm16",
    "f32": "float32",
    "f32le": "float32",
    "float": "float32",
    "ulaw": "mulaw",
    "u-law": "mulaw",
    "mu-law": "mulaw",
    "pcmu": "mulaw",
    "g711u": "mulaw",
    "a-law": "alaw",
    "pcma": "alaw",
    "g711a": "alaw",
}

AudioData = Union[bytes, bytearray, memoryview, np.ndarray]  # noqa: UP007 (a runtime alias on 3.10)


class AudioFormatError(ValueError):
    """Audio that cannot be decoded as declared (wrong size, wrong type, non-finite samples...)."""


@dataclass(frozen=True)
class AudioFormat:
    """How a stream's raw audio is laid out: sample rate (Hz), sample encoding and interleaved channel count.

    ``encoding`` accepts common aliases (``"s16le"``, ``"ulaw"``, ``"PCMU"``, ...) and stores the canonical
    name.
    """

    sample_rate: int
    encoding: Encoding = "pcm16"
    channels: int = 1

    def __post_init__(self) -> None:
        enc = str(self.encoding).lower()
        enc = _ALIASES.get(enc, enc)
        if enc not in ENCODINGS:
            raise AudioFormatError(
                f"unknown audio encoding {self.encoding!r}; use one of {', '.join(ENCODINGS)}"
            )
        object.__setattr__(self, "encoding", enc)
        if not isinstance(self.sample_rate, (int, np.integer)) or isinstance(self.sample_rate, bool):
            if isinstance(self.sample_rate, float) and self.sample_rate.is_integer():
                object.__setattr__(self, "sample_rate", int(self.sample_rate))
            else:
                raise AudioFormatError(f"sample_rate must be a whole number of Hz, got {self.sample_rate!r}")
        if not 1000 <= int(self.sample_rate) <= 384000:
            raise AudioFormatError(f"sample_rate {self.sample_rate} Hz is outside 1000..384000")
        if not isinstance(self.channels, (int, np.integer)) or not 1 <= int(self.channels) <= 64:
            raise AudioFormatError(f"channels must be an integer in 1..64, got {self.channels!r}")
        object.__setattr__(self, "sample_rate", int(self.sample_rate))
        object.__setattr__(self, "channels", int(self.channels))

    @property
    def bytes_per_sample(self) -> int:
        return _BYTES_PER_SAMPLE[self.encoding]

    @property
    def bytes_per_frame(self) -> int:
        """Bytes of one interleaved frame (one sample of every channel)."""
        return self.bytes_per_sample * self.channels


# --- G.711 (ITU-T reference algorithm, as in Sun's g711.c and CPython's former audioop)
# -----------------------


@lru_cache(maxsize=1)
def _mulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


@lru_cache(maxsize=1)
def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


@lru_cache(maxsize=1)
def _mulaw_encode_table() -> np.ndarray:
    """uint8 code for every int16 value (index = value + 32768)."""
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + (0x84 >> 2)
    seg_end = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    seg = np.searchsorted(seg_end, mag, side="left")
    code = (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


@lru_cache(maxsize=1)
def _alaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg_end = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    seg = np.searchsorted(seg_end, mag, side="left")
    segc = np.minimum(seg, 7)
    low = np.where(segc < 2, (mag >> 1) & 0x0F, (mag >> segc) & 0x0F)
    code = np.where(seg >= 8, 0x7F, (segc << 4) | low)
    return (code ^ mask).astype(np.uint8)


def float_to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] to int16 (x 32768, rounded, clipped): the inverse of the pcm16 decoder."""
    return np.clip(np.rint(np.asarray(samples, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def encode(samples: np.ndarray, fmt: AudioFormat) -> bytes:
    """Encode float samples ``[frames]`` or ``[frames, channels]`` to the raw bytes of ``fmt`` (interleaved).

    Used by tests, benchmarks and telephony back-channels; the inverse of :func:`decode` up to quantisation.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != fmt.channels:
        raise AudioFormatError(f"expected [frames, {fmt.channels}] samples, got shape {x.shape}")
    if fmt.encoding == "float32":
        return np.ascontiguousarray(x, dtype="<f4").tobytes()
    pcm = float_to_pcm16(x)
    if fmt.encoding == "pcm16":
        return np.ascontiguousarray(pcm, dtype="<i2").tobytes()
    table = _mulaw_encode_table() if fmt.encoding == "mulaw" else _alaw_encode_table()
    return table[pcm.astype(np.int32) + 32768].tobytes()


# --- decoding
# ------------------------------------------------------------------------------------------------


@lru_cache(maxsize=2)
def _float_decode_table(encoding: str) -> np.ndarray:
    table = _mulaw_decode_table() if encoding == "mulaw" else _alaw_decode_table()
    return table.astype(np.float32) / np.float32(32768.0)


def _codes_to_float(codes: np.ndarray, encoding: str) -> np.ndarray:
    return _float_decode_table(encoding)[codes]


_PCM16_SCALE = np.float32(1.0 / 32768.0)  # a power of two: x * 2**-15 == x / 32768 exactly


def _decode_bytes(buf: bytes | bytearray | memoryview, fmt: AudioFormat) -> np.ndarray:
    if fmt.encoding == "pcm16":
        x = np.frombuffer(buf, dtype="<i2").astype(np.float32)
        x *= _PCM16_SCALE  # in place: one array per chunk, not two (20 ms frames arrive 50 times a second)
    elif fmt.encoding == "float32":
        x = np.frombuffer(buf, dtype="<f4").astype(np.float32)
    else:
        x = _codes_to_float(np.frombuffer(buf, dtype=np.uint8), fmt.encoding)
    return x.reshape(-1, fmt.channels)


def _decode_array(arr: np.ndarray, fmt: AudioFormat) -> np.ndarray:
    if arr.dtype.kind == "f":
        x = arr.astype(np.float32, copy=False)
    elif arr.dtype == np.int16:
        x = arr.astype(np.float32)
        x *= _PCM16_SCALE
    elif arr.dtype == np.uint8 and fmt.encoding in ("mulaw", "alaw"):
        x = _codes_to_float(arr, fmt.encoding)
    else:
        raise AudioFormatError(
            f"cannot decode an array of dtype {arr.dtype} as {fmt.encoding}: pass float samples in [-1, 1], "
            "int16 PCM, uint8 G.711 codes, or raw bytes"
        )
    if x.ndim == 1:
        if x.size % fmt.channels:
            raise AudioFormatError(f"{x.size} interleaved samples do not divide into {fmt.channels} channels")
        return x.reshape(-1, fmt.channels)
    if x.ndim == 2 and x.shape[1] == fmt.channels:
        return x
    raise AudioFormatError(f"expected samples shaped [frames] or [frames, {fmt.channels}], got {arr.shape}")


def check_finite(x: np.ndarray) -> None:
    """Reject NaN or infinite samples: they would poison the resampler state and every later window."""
    if x.size and not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise AudioFormatError(f"chunk rejected: {bad} of {x.size} samples are NaN or infinite")


def decode(data: AudioData, fmt: AudioFormat) -> np.ndarray:
    """Decode a whole buffer to float32 ``[frames, channels]``; a byte count that splits a frame is an
    error."""
    if isinstance(data, np.ndarray):
        x = _decode_array(data, fmt)
        if x.dtype.kind == "f" and data.dtype.kind == "f":
            check_finite(x)  # integer PCM and G.711 codes decode to finite values by construction
        return x
    if isinstance(data, (bytes, bytearray, memoryview)):
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        if n % fmt.bytes_per_frame:
            raise AudioFormatError(
                f"{n} bytes is not a whole number of {fmt.encoding} frames ({fmt.bytes_per_frame} bytes each)"
            )
        x = _decode_bytes(data, fmt)
        if fmt.encoding == "float32":
            check_finite(x)
        return x
    raise AudioFormatError(f"audio must be bytes or a numpy array, got {type(data).__name__}")


class Decoder:
    """Stateful decoder for a byte stream whose chunks may split frames.

    The tail of a chunk that does not complete a frame is kept and prepended to the next chunk, so feeding the
    same bytes in any chunking decodes to the same samples. Arrays are always whole frames and bypass the
    carry. A chunk with non-finite samples raises :class:`AudioFormatError` and leaves the decoder as it was.
    """

    def __init__(self, fmt: AudioFormat) -> None:
        self.fmt = fmt
        self._carry = b""
        self._frame_bytes = fmt.bytes_per_frame
        self._check = fmt.encoding == "float32"  # integer PCM and G.711 codes are finite by construction

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete frame waiting for the next chunk."""
        return len(self._carry)

    def decode(self, data: AudioData) -> np.ndarray:
        if isinstance(data, np.ndarray):
            return decode(data, self.fmt)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise AudioFormatError(f"audio must be bytes or a numpy array, got {type(data).__name__}")
        fmt = self.fmt
        if not self._carry and len(data) % self._frame_bytes == 0 and not isinstance(data, memoryview):
            # the common case (whole frames, nothing carried): decode in place, no concatenation or slicing
            x = _decode_bytes(data, fmt)
            if self._check:
                check_finite(x)
            return x
        buf = self._carry + bytes(data) if self._carry else bytes(data)
        whole = len(buf) - len(buf) % self._frame_bytes
        x = _decode_bytes(buf[:whole], fmt)
        if self._check:
            check_finite(x)
        self._carry = buf[whole:]
        return x
