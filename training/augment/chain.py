"""Augmentations that define what "real" speech includes, and a seeded chain that applies them.

A one-class detector learns whatever its real training data has in common. Without augmentation that is the
recording chain (band, codec, microphone, room, level), and every call through another chain is "anomalous".
Each augmentation here widens one of those axes; the :class:`Chain` applies each with its own probability,
from a plain dict config (YAML-able), with a seed, so a training run is reproducible.

Every augmentation maps float32 mono ``[n]`` at ``sample_rate`` to float32 ``[n]`` (same length), drawing all
its randomness from the ``numpy.random.Generator`` it is given. The named presets (``full``, ``compact``) and
the per-run config section live in :mod:`training.augment.presets`; which codecs this machine can run, in
:mod:`training.augment.codecs`. A codec that runs only through the ffmpeg command is slow per call: give it a
``cache_dir`` and a clip ``key`` to pre-render a few variants per clip once and reuse them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy import signal

from training.audio_io import CodecError, g711_roundtrip, resample, write_audio_atomic
from training.augment.codecs import CODECS, backend_for, render

log = logging.getLogger(__name__)


class AugmentConfigError(ValueError):
    """An augmentation config is invalid; the message names the entry and the problem."""


def _uniform(rng: np.random.Generator, lo_hi: Sequence[float]) -> float:
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    return lo if hi <= lo else float(rng.uniform(lo, hi))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


@dataclass
class Augmentation:
    """Base class. Subclasses set ``name`` and implement :meth:`apply`."""

    name: ClassVar[str] = ""

    def apply(self, x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __call__(
        self, x: np.ndarray, sample_rate: int, rng: np.random.Generator, key: str | None = None
    ) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        y = self.apply(x, sample_rate, rng)
        y = np.asarray(y, dtype=np.float32)
        if y.shape != x.shape:
            raise RuntimeError(f"augmentation {self.name} changed the length {x.shape} -> {y.shape}")
        return np.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0)

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


@dataclass
class TelephoneBand(Augmentation):
    """Band-pass to a telephone band; edges drawn from ``low_hz`` and ``high_hz`` ranges (300-3400 Hz
    nominal)."""

    name: ClassVar[str] = "telephone_band"
    low_hz: tuple[float, float] = (200.0, 400.0)
    high_hz: tuple[float, float] = (3000.0, 3700.0)
    order: int = 8

    def apply(self, x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        lo = _uniform(rng, self.low_hz)
        hi = min(_uniform(rng, self.high_hz), 0.45 * sample_rate)
        sos = signal.butter(self.order, [lo, hi], btype="bandpass", fs=sample_rate, output="sos")
        return signal.sosfilt(sos, x).astype(np.float32)


@dataclass
class G711(Augmentation):
    """Telephone channel: 8 kHz G.711 round trip (exact numpy codec, which also band-limits to ~3.4 kHz).

    ``law`` is ``mulaw``, ``alaw`` or ``random``; with ``random``, mu-law is drawn with probability
    ``mulaw_share`` (North America and Japan use mu-law, most other networks A-law)."""

    name: ClassVar[str] = "g711"
    law: str = "random"
    mulaw_share: float = 0.5

    def __post_init__(self) -> None:
        if self.law not in ("mulaw", "alaw", "random"):
            raise AugmentConfigError(f"g711: law must be mulaw, alaw or random, got {self.law!r}")

    def apply(self, x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        law = self.law if self.law != "random" else ("mulaw" if rng.random() < self.mulaw_share else "alaw")
        return g711_roundtrip(x, sample_rate, law)


_FAILED_CODECS: set[str] = set()


@dataclass
class Codec(Augmentation):
    """A lossy speech codec round trip at a random low bitrate.

    ``codecs`` lists the candidates (:data:`~training.augment.codecs.CODECS` keys); one is drawn per call,
    then one of its ``bitrates`` (defaults per codec). In-process back ends (PyAV, libsndfile) cost a few to
    tens of milliseconds per 2 s crop; a codec only the ffmpeg command can run costs two processes per call
    (~0.2-0.5 s), so with ``cache_dir`` set and a ``key`` given, ``variants`` renderings per clip and codec
    are stored once and one of them is picked per call. A round trip that fails in the middle of a run (a
    back end that passed the start-up probe but refuses one clip) leaves that clip unchanged and is reported
    once per codec, so a long training run does not stop on it.
    """

    name: ClassVar[str] = "codec"
    codecs: tuple[str, ...] = ("g722", "opus", "amrnb", "gsm")
    bitrates: dict[str, tuple[int, ...]] = field(default_factory=dict)
    cache_dir: str | None = None
    variants: int = 4

    def __post_init__(self) -> None:
        unknown = [c for c in self.codecs if c not in CODECS]
        if unknown:
            raise AugmentConfigError(f"codec: unknown codec(s) {unknown}; known: {sorted(CODECS)}")

    def _render(self, x: np.ndarray, sample_rate: int, codec: str, bitrate: int) -> np.ndarray:
        backend = backend_for(codec)
        try:
            if backend is None:
                raise CodecError("no back end on this machine runs it")
            return render(x, sample_rate, codec, bitrate, backend)
        except CodecError as exc:
            if codec not in _FAILED_CODECS:
                _FAILED_CODECS.add(codec)
                log.warning("codec %s failed (%s); clips that draw it pass unchanged", codec, exc)
            return x

    def apply(self, x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        return self._apply(x, sample_rate, rng, None)

    def __call__(
        self, x: np.ndarray, sample_rate: int, rng: np.random.Generator, key: str | None = None
    ) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return self._apply(x, sample_rate, rng, key)

    def _apply(
        self, x: np.ndarray, sample_rate: int, rng: np.random.Generator, key: str | None
    ) -> np.ndarray:
        codec = self.codecs[int(rng.integers(len(self.codecs)))]
        rates = tuple(self.bitrates.get(codec, CODECS[codec].bitrates))
        variant = int(rng.integers(max(1, self.variants)))
        bitrate = int(rates[variant % len(rates)])
        if self.cache_dir is None or key is None:
            return self._render(x, sample_rate, codec, bitrate)
        digest = hashlib.sha1(
            json.dumps([key, codec, bitrate, sample_rate, x.shape[0]]).encode()
        ).hexdigest()[:20]
        path = Path(self.cache_dir) / codec / f"{digest}-{variant}.flac"
        if path.is_file():
            import soundfile as sf

            y, sr = sf.read(str(path), dtype="float32")
            if sr == sample_rate and y.shape == x.shape:
                return y
        y = self._render(x, sample_rate, codec, bitrate)
        write_audio_atomic(path, y, sample_rate)
        return y


@dataclass
class MicColouring(Augmentation):
    """Microphone / handset colouring: a smooth random EQ curve (``points`` random gains within
    +-``max_gain_db`` at log-spaced frequencies, interpolated), applied zero-phase in the frequency domain,
    plus an optional random low cut (small loudspeakers and cheap microphones lose the bass)."""

    name: ClassVar[str] = "mic_colouring"
    max_gain_db: float = 8.0
    points: int = 6
    low_cut_hz: tuple[float, float] = (50.0, 250.0)

    def apply(self, x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        n = x.shape[0]
        spec = np.fft.rfft(x.astype(np.float64))
        freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
        anchors = np.geomspace(60.0, sample_rate / 2.0, self.points)
        gains = rng.uniform(-self.max_gain_db, self.max_gain_db, self.points)
        curve_db = np.interp(np.log(np.maximum(freqs, 60.0)), np.log(anchors), gains)
        cut = _uniform(rng, self.low_cut_hz)
        highpass = 1.0 / np.sqrt(1.0 + (cut / np.maximum(freqs, 1e-3)) ** 4)  # 2nd-order magnitude response
        y = np.fft.irfft(spec * (10.0 ** (curve_db / 20.0)) * highpass, n)
        return (y * (_rms(x) / _rms(y))).astype(np.float32)


@dataclass
class Reverb(Augmentation):
    """Room reverberation with a synthetic impulse response: a direct path plus exponentially decaying noise
    (RT60 drawn from ``rt60_s``, the response ``length_rt60`` RT60s long), mixed at a random
    direct-to-reverberant ratio (``drr_db``) after a random pre-delay (``predelay_ms``). With ``damping`` the
    high frequencies of the tail decay twice as fast (air and wall absorption); with ``keep_level`` the output
    is scaled back to the input's RMS, otherwise the reverberant energy adds to it."""

    name: ClassVar[str] = "reverb"
    rt60_s: tuple[float, float] = (0.15, 0.9)
    drr_db: tuple[float, float] = (-3.0, 12.0)
    predelay_ms: tuple[float, float] = (2.0, 20.0)
    length_rt60: float = 1.2
    damping: bool = True
    keep_level: bool = True

    def impulse_response(self, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        rt60 = _uniform(rng, self.rt60_s)
        n = max(16, int(rt60 * sample_rate * self.length_rt60))
        t = np.arange(n) / sample_rate
        tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # -60 dB at rt60
        if self.damping:
            # air and wall absorption: low-pass the tail progressively (two bands, the upper decaying twice
            # as fast)
            sos = signal.butter(2, 0.25 * sample_rate / 2, fs=sample_rate, output="sos")
            low = signal.sosfilt(sos, tail)
            tail = low + (tail - low) * np.exp(-6.9078 * t / (rt60 / 2.0))
        pre = int(_uniform(rng, self.predelay_ms) * sample_rate / 1000.0)
        tail[: pre + 1] = 0.0
        drr = _uniform(rng, self.drr_db)
        tail *= 10.0 ** (-drr / 20.0) / (np.sqrt(np.sum(tail**2)) + 1e-12)
        tail[0] = 1.0
        return tail.astype(np.float64)

    def apply(self, x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        ir = self.impulse_response(sample_rate, rng)
        y = signal.fftconvolve(x.astype(np.float64), ir)[: x.shape[0]]
        if self.keep_level:
            y = y * (_rms(x) / _rms(y))
        return y.astype(np.float32)


@dataclass
class Noise(Augmentation):
    """Additive noise at a random SNR (``snr_db``, relative to the clip's RMS); colour drawn from ``colours``
    (white, pink, brown: spectra falling 0, 3 and 6 dB per octave)."""

    name: ClassVar[str] = "noise"
    snr_db: tuple[float, float] = (5.0, 35.0)
    colours: tuple[str, ...] = ("white", "pink", "brown")

    _SLOPES: ClassVar[dict[str, float]] = {"white": 0.0, "pink": 0.5, "brown": 1.0}

    def apply(self, x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        colour = self.colours[int(rng.integers(len(self.colours)))]
        if colour not in self._SLOPES:
            raise AugmentConfigError(f"noise: unknown colour {colour!r}; known: {sorted(self._SLOPES)}")
        n = x.shape[0]
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), 20.0)
        noise = np.fft.irfft(spec / f ** self._SLOPES[colour], n)
        snr = _uniform(rng, self.snr_db)
        noise *= _rms(x) / _rms(noise) * 10.0 ** (-snr / 20.0)
        return (x + noise).astype(np.float32)


@dataclass
class Gain(Augmentation):
    """Level change by a random number of dB (``gain_db``), kept within full scale by ``limit``: ``clip``
    hard-limits to [-1, 1] (a gain stage that overloads), ``normalise`` scales a result that would exceed
    full scale back to a peak of 1 (a recorder that never clips)."""

    name: ClassVar[str] = "gain"
    gain_db: tuple[float, float] = (-20.0, 6.0)
    limit: str = "clip"

    def __post_init__(self) -> None:
        if self.limit not in ("clip", "normalise"):
            raise AugmentConfigError(f"gain: limit must be clip or normalise, got {self.limit!r}")

    def apply(self, x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        y = x * np.float32(10.0 ** (_uniform(rng, self.gain_db) / 20.0))
        if self.limit == "clip":
            return np.clip(y, -1.0, 1.0)
        peak = float(np.max(np.abs(y)) + 1e-9) if y.size else 0.0
        return y / peak if peak > 1.0 else y


@dataclass
class Clipping(Augmentation):
    """Mild clipping: the signal is driven so that its peak exceeds full scale by ``overdrive_db`` and hard
    clipped at the original peak level (a too-hot analogue input or AGC overshoot)."""

    name: ClassVar[str] = "clipping"
    overdrive_db: tuple[float, float] = (1.0, 8.0)

    def apply(self, x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        if peak == 0.0:
            return x
        drive = 10.0 ** (_uniform(rng, self.overdrive_db) / 20.0)
        return (np.clip(x * drive, -peak, peak) / drive).astype(np.float32)


@dataclass
class BandLimit(Augmentation):
    """Resample down and back up (a lower-rate recording in a 16 kHz stream): ``rates`` to choose from."""

    name: ClassVar[str] = "band_limit"
    rates: tuple[int, ...] = (8000, 11025, 12000)

    def apply(self, x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        rate = int(self.rates[int(rng.integers(len(self.rates)))])
        if rate >= sample_rate:
            return x
        y = resample(resample(x, sample_rate, rate), rate, sample_rate)
        out = np.zeros_like(x)
        out[: min(x.shape[0], y.shape[0])] = y[: x.shape[0]]
        return out


@dataclass
class Identity(Augmentation):
    """Leaves the clip as it is: the "no change" choice of a ``one_of`` (e.g. most calls keep the original
    channel)."""

    name: ClassVar[str] = "identity"

    def apply(self, x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        return x


@dataclass
class OneOf(Augmentation):
    """Exactly one of ``choices`` (weighted by their ``weight``), e.g. one channel per clip."""

    name: ClassVar[str] = "one_of"
    choices: list[Augmentation] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)

    def apply(self, x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        return self(x, sample_rate, rng)

    def __call__(  # noqa: D102 - passes the clip key on to the chosen augmentation
        self, x: np.ndarray, sample_rate: int, rng: np.random.Generator, key: str | None = None
    ) -> np.ndarray:
        if not self.choices:
            return np.asarray(x, dtype=np.float32)
        w = np.asarray(self.weights or [1.0] * len(self.choices), dtype=np.float64)
        idx = int(rng.choice(len(self.choices), p=w / w.sum()))
        return self.choices[idx](x, sample_rate, rng, key)


REGISTRY: dict[str, type[Augmentation]] = {
    cls.name: cls
    for cls in (
        TelephoneBand,
        G711,
        Codec,
        MicColouring,
        Reverb,
        Noise,
        Gain,
        Clipping,
        BandLimit,
        Identity,
        OneOf,
    )
}


def build_augmentation(entry: Mapping[str, Any], where: str = "augmentations") -> tuple[Augmentation, float]:
    """One config entry ``{"name": ..., "p": ..., **params}`` -> (augmentation, probability)."""
    if not isinstance(entry, Mapping) or "name" not in entry:
        raise AugmentConfigError(f"{where}: each entry needs a 'name' (got {entry!r})")
    params = dict(entry)
    name = params.pop("name")
    p = float(params.pop("p", 1.0))
    params.pop("weight", None)  # read by the enclosing one_of
    if not 0.0 <= p <= 1.0:
        raise AugmentConfigError(f"{where}/{name}: p must be within [0, 1], got {p}")
    cls = REGISTRY.get(name)
    if cls is None:
        raise AugmentConfigError(f"{where}: unknown augmentation {name!r}; known: {sorted(REGISTRY)}")
    if cls is OneOf:
        built = [build_augmentation(c, f"{where}/{name}") for c in params.pop("choices", [])]
        weights = [float(c.get("weight", 1.0)) for c in entry.get("choices", [])]
        aug: Augmentation = OneOf(choices=[a for a, _ in built], weights=weights)
    else:
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
        try:
            aug = cls(**params)
        except TypeError as exc:
            raise AugmentConfigError(f"{where}/{name}: {exc}") from exc
    return aug, p


@dataclass
class Chain:
    """Applies augmentations in order, each with its probability; reproducible from ``seed``.

    ``Chain.from_config({"seed": 0, "augmentations": [{"name": "reverb", "p": 0.3, "rt60_s": [0.2, 0.6]}]})``.
    Call with an explicit ``rng`` (e.g. per worker and epoch) or let the chain use its own seeded generator.
    """

    steps: list[tuple[Augmentation, float]]
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Chain:
        if not isinstance(config, Mapping):
            raise AugmentConfigError(f"augmentation config must be a mapping, got {type(config).__name__}")
        entries = config.get("augmentations", [])
        if not isinstance(entries, list):
            raise AugmentConfigError("augmentations: must be a list of entries")
        steps = [build_augmentation(e, f"augmentations[{i}]") for i, e in enumerate(entries)]
        return cls(steps=steps, seed=int(config.get("seed", 0)))

    def to_config(self) -> dict[str, Any]:
        def one(aug: Augmentation, p: float | None) -> dict[str, Any]:
            d: dict[str, Any] = {"name": aug.name}
            if p is not None:
                d["p"] = p
            if isinstance(aug, OneOf):
                d["choices"] = [
                    {**one(c, None), "weight": w}
                    for c, w in zip(aug.choices, aug.weights or [1.0] * len(aug.choices), strict=False)
                ]
            else:
                d.update({k: list(v) if isinstance(v, tuple) else v for k, v in aug.params().items()})
            return d

        return {"seed": self.seed, "augmentations": [one(a, p) for a, p in self.steps]}

    def __call__(
        self,
        x: np.ndarray,
        sample_rate: int,
        rng: np.random.Generator | None = None,
        key: str | None = None,
    ) -> np.ndarray:
        rng = rng if rng is not None else self._rng
        y = np.asarray(x, dtype=np.float32)
        for aug, p in self.steps:
            if p >= 1.0 or rng.random() < p:
                y = aug(y, sample_rate, rng, key)
        return y


__all__ = [
    "AugmentConfigError",
    "Augmentation",
    "BandLimit",
    "CODECS",
    "Chain",
    "Clipping",
    "Codec",
    "CodecError",
    "G711",
    "Gain",
    "Identity",
    "MicColouring",
    "Noise",
    "OneOf",
    "REGISTRY",
    "Reverb",
    "TelephoneBand",
    "build_augmentation",
]
