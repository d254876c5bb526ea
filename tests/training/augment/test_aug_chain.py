"""training.augment: each augmentation does what it says, deterministically; the chain and its config."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # training/ is a source folder, not an installed package
    sys.path.insert(0, str(ROOT))

from training.audio_io import pyav_available  # noqa: E402
from training.augment import (  # noqa: E402
    REGISTRY,
    AugmentConfigError,
    Chain,
    Codec,
    build_augmentation,
    default_config,
)
from training.augment.__main__ import speechlike  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return speechlike(2.0)


def band_energy_db(x: np.ndarray, lo: float, hi: float) -> float:
    f, p = signal.welch(x, fs=SR, nperseg=1024)
    sel = (f >= lo) & (f < hi)
    return float(10 * np.log10(np.sum(p[sel]) + 1e-20))


IN_PROCESS = [name for name in REGISTRY if name not in ("codec", "one_of")]


@pytest.mark.parametrize("name", IN_PROCESS)
def test_every_augmentation_keeps_length_is_finite_and_seeded(name: str, clip: np.ndarray) -> None:
    aug, _ = build_augmentation({"name": name})
    a = aug(clip, SR, np.random.default_rng(7))
    b = aug(clip, SR, np.random.default_rng(7))
    assert a.shape == clip.shape and a.dtype == np.float32 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, clip)


def test_telephone_band_passes_speech_band_and_cuts_the_rest(clip: np.ndarray) -> None:
    aug, _ = build_augmentation({"name": "telephone_band", "low_hz": [300, 300], "high_hz": [3400, 3400]})
    y = aug(clip, SR, np.random.default_rng(0))
    assert band_energy_db(y, 800, 2500) - band_energy_db(clip, 800, 2500) > -1.5
    assert band_energy_db(y, 5000, 8000) - band_energy_db(clip, 5000, 8000) < -30
    assert band_energy_db(y, 0, 120) - band_energy_db(clip, 0, 120) < -20


def test_noise_hits_the_requested_snr(clip: np.ndarray) -> None:
    aug, _ = build_augmentation({"name": "noise", "snr_db": [12, 12], "colours": ["white"]})
    y = aug(clip, SR, np.random.default_rng(0))
    noise = y - clip
    snr = 10 * np.log10(np.mean(clip.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert snr == pytest.approx(12.0, abs=0.05)


def test_pink_noise_falls_with_frequency() -> None:
    aug, _ = build_augmentation({"name": "noise", "snr_db": [0, 0], "colours": ["pink"]})
    quiet = np.full(4 * SR, 0.1, np.float32)
    n = aug(quiet, SR, np.random.default_rng(0)) - quiet
    # -3 dB per octave: 500-1000 Hz carries about as much power as 4-8 kHz (equal power per octave)
    assert abs(band_energy_db(n, 500, 1000) - band_energy_db(n, 4000, 8000)) < 1.5


def test_gain_and_clipping(clip: np.ndarray) -> None:
    gain, _ = build_augmentation({"name": "gain", "gain_db": [-12, -12]})
    y = gain(clip, SR, np.random.default_rng(0))
    np.testing.assert_allclose(y, clip * 10 ** (-12 / 20), rtol=1e-5, atol=1e-7)
    clip_aug, _ = build_augmentation({"name": "clipping", "overdrive_db": [6, 6]})
    z = clip_aug(clip, SR, np.random.default_rng(0))
    peak = np.max(np.abs(clip))
    assert np.max(np.abs(z)) <= peak / 10 ** (6 / 20) + 1e-6
    flat = np.isclose(np.abs(z), np.max(np.abs(z)))
    assert flat.sum() > 10  # the loudest samples were flattened


def test_reverb_adds_a_decaying_tail() -> None:
    aug, _ = build_augmentation({"name": "reverb", "rt60_s": [0.5, 0.5], "drr_db": [0, 0]})
    burst = np.zeros(SR, np.float32)
    burst[: SR // 10] = np.random.default_rng(0).standard_normal(SR // 10).astype(np.float32) * 0.1
    y = aug(burst, SR, np.random.default_rng(0))
    tail = y[SR // 10 + 800 : SR // 10 + 4000]
    later = y[SR // 10 + 6000 : SR // 10 + 9200]
    assert np.sqrt(np.mean(tail**2)) > 1e-3  # energy where the dry signal is silent
    assert np.sqrt(np.mean(later**2)) < np.sqrt(np.mean(tail**2)) / 2  # and it decays


def test_mic_colouring_changes_the_spectrum_but_not_the_level(clip: np.ndarray) -> None:
    aug, _ = build_augmentation({"name": "mic_colouring", "max_gain_db": 10})
    y = aug(clip, SR, np.random.default_rng(3))
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(clip**2)), rel=1e-3)
    diffs = [
        band_energy_db(y, lo, 2 * lo) - band_energy_db(clip, lo, 2 * lo) for lo in (250, 500, 1000, 2000)
    ]
    assert max(diffs) - min(diffs) > 2.0


@pytest.mark.skipif(not pyav_available(), reason="needs PyAV")
@pytest.mark.parametrize("codec", ["g722", "opus", "opus_nb", "amrnb"])
def test_in_process_codecs(codec: str, clip: np.ndarray) -> None:
    aug = Codec(codecs=(codec,))
    y = aug(clip, SR, np.random.default_rng(0))
    assert y.shape == clip.shape and np.all(np.isfinite(y))
    assert (
        np.corrcoef(clip, y)[0, 1] > 0.5 or band_energy_db(y, 100, 3000) > band_energy_db(clip, 100, 3000) - 6
    )
    if codec in ("opus_nb", "amrnb"):  # narrowband codecs remove the upper band
        assert band_energy_db(y, 4500, 8000) < band_energy_db(clip, 4500, 8000) - 20


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_gsm_prerendered_variants_are_cached(tmp_path: Path, clip: np.ndarray) -> None:
    aug = Codec(codecs=("gsm",), cache_dir=str(tmp_path), variants=2)
    y1 = aug(clip, SR, np.random.default_rng(0), key="clip-1")
    files = sorted(tmp_path.rglob("*.flac"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    y2 = aug(
        clip, SR, np.random.default_rng(0), key="clip-1"
    )  # same variant drawn: read back, not re-encoded
    assert files[0].stat().st_mtime_ns == mtime
    np.testing.assert_allclose(y1, y2, atol=1.5 / 32768)
    assert band_energy_db(y1, 4500, 8000) < band_energy_db(clip, 4500, 8000) - 20


def test_chain_config_roundtrip_and_reproducibility(clip: np.ndarray) -> None:
    cfg = default_config(seed=5)
    chain = Chain.from_config(cfg)
    again = Chain.from_config(chain.to_config())
    assert again.to_config() == chain.to_config()
    a = chain(clip, SR, np.random.default_rng(11))
    b = again(clip, SR, np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)
    outs = [chain(clip, SR) for _ in range(6)]  # the chain's own generator moves on: different draws
    assert len({o.tobytes() for o in outs}) > 1


def test_chain_probabilities_are_respected(clip: np.ndarray) -> None:
    never = Chain.from_config({"augmentations": [{"name": "gain", "p": 0.0}]})
    np.testing.assert_array_equal(never(clip, SR), clip)
    half = Chain.from_config({"seed": 1, "augmentations": [{"name": "gain", "p": 0.5, "gain_db": [-6, -6]}]})
    changed = sum(not np.array_equal(half(clip, SR), clip) for _ in range(400))
    assert 160 < changed < 240


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"augmentations": [{"name": "warp"}]}, "unknown augmentation 'warp'"),
        ({"augmentations": [{"name": "gain", "p": 1.5}]}, r"augmentations\[0\]/gain: p must be within"),
        ({"augmentations": [{"p": 0.5}]}, "needs a 'name'"),
        ({"augmentations": [{"name": "gain", "volume": 3}]}, "augmentations\\[0\\]/gain: .*volume"),
        ({"augmentations": [{"name": "codec", "codecs": ["mp3"]}]}, "unknown codec"),
        ({"augmentations": "gain"}, "must be a list"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_bad_config_is_named(cfg: object, message: str) -> None:
    with pytest.raises(AugmentConfigError, match=message):
        Chain.from_config(cfg)  # type: ignore[arg-type]


def test_demo_writes_a_picture(tmp_path: Path) -> None:
    from training.augment.__main__ import main

    assert main(["demo", "--out", str(tmp_path)]) == 0
    png = tmp_path / "augmentations.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
