"""training.augment: each augmentation does what it says, deterministically; the chain and its config."""

from __future__ import annotations

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
from training.augment.codecs import backend_for  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return speechlike(2.0)


def band_energy_db(x: np.ndarray, lo: float, hi: float) -> float:
    f, p = signal.welch(x, fs=SR, nperseg=1024)
    sel = (f >= lo) & (f < hi)
    return float(10 * np.log10(np.sum(p[sel]) + 1e-20))


IN_PROCESS = [name for name in REGISTRY if name not in ("codec", "one_of", "identity")]


@pytest.mark.parametrize("name", IN_PROCESS)
def test_every_augmentation_keeps_length_is_finite_and_seeded(name: str, clip: np.ndarray) -> None:
    aug, _ = build_augmentation({"name": name})
    a = aug(clip, SR, np.random.default_rng(7))
    b = aug(clip, SR, np.random.default_rng(7))
    assert a.shape == clip.shape and a.dtype == np.float32 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, clip)


def test_identity_leaves_the_clip_alone(clip: np.ndarray) -> None:
    aug, _ = build_augmentation({"name": "identity"})
    np.testing.assert_array_equal(aug(clip, SR, np.random.default_rng(0)), clip)


@pytest.mark.parametrize(
    ("entry", "cut_hz"),
    [
        ({"name": "band_limit", "rates": [8000]}, 4000),
        ({"name": "band_limit", "rates": [11025]}, 5512),
        ({"name": "band_limit", "rates": [12000]}, 6000),
        ({"name": "g711", "law": "mulaw"}, 4000),
        ({"name": "g711", "law": "alaw"}, 4000),
        ({"name": "telephone_band", "low_hz": [300, 300], "high_hz": [3400, 3400]}, 4000),
    ],
)
def test_band_limits_remove_the_energy_above_the_cut(entry: dict, cut_hz: float) -> None:
    white = np.random.default_rng(1).standard_normal(2 * SR).astype(np.float32) * 0.1
    aug, _ = build_augmentation(entry)
    y = aug(white, SR, np.random.default_rng(0))
    above = band_energy_db(y, cut_hz + 300, 8000) - band_energy_db(white, cut_hz + 300, 8000)
    below = band_energy_db(y, 500, cut_hz - 600) - band_energy_db(white, 500, cut_hz - 600)
    assert above < -40  # G.711 quantisation noise is itself band-limited by the 8 kHz resampling
    assert below > -3


def test_g711_mulaw_share_picks_the_law(clip: np.ndarray) -> None:
    mulaw, _ = build_augmentation({"name": "g711", "law": "mulaw"})
    alaw, _ = build_augmentation({"name": "g711", "law": "alaw"})
    always_mu, _ = build_augmentation({"name": "g711", "law": "random", "mulaw_share": 1.0})
    never_mu, _ = build_augmentation({"name": "g711", "law": "random", "mulaw_share": 0.0})
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(always_mu(clip, SR, rng), mulaw(clip, SR, rng))
    np.testing.assert_array_equal(never_mu(clip, SR, rng), alaw(clip, SR, rng))
    with pytest.raises(AugmentConfigError, match="law must be"):
        build_augmentation({"name": "g711", "law": "ulaw"})


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


def test_gain_normalise_never_clips(clip: np.ndarray) -> None:
    loud, _ = build_augmentation({"name": "gain", "gain_db": [20, 20], "limit": "normalise"})
    y = loud(clip, SR, np.random.default_rng(0))
    assert np.max(np.abs(y)) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(y, clip / np.max(np.abs(clip)), rtol=1e-5, atol=1e-6)  # not clipped
    quiet, _ = build_augmentation({"name": "gain", "gain_db": [-6, -6], "limit": "normalise"})
    np.testing.assert_allclose(quiet(clip, SR, np.random.default_rng(0)), clip * 10 ** (-6 / 20), rtol=1e-5)
    with pytest.raises(AugmentConfigError, match="limit must be"):
        build_augmentation({"name": "gain", "limit": "soft"})


def test_compact_reverb_adds_a_quarter_of_the_energy_without_damping() -> None:
    aug, _ = build_augmentation(
        {
            "name": "reverb", "rt60_s": [0.4, 0.4], "drr_db": [20 * np.log10(2), 20 * np.log10(2)],
            "predelay_ms": [0, 0], "length_rt60": 1.0, "damping": False, "keep_level": False,
        }
    )  # fmt: skip
    ir = aug.impulse_response(SR, np.random.default_rng(0))
    assert ir.shape == (int(0.4 * SR),) and ir[0] == 1.0
    assert np.sum(ir[1:] ** 2) == pytest.approx(0.25, rel=1e-6)
    impulse = np.zeros(SR, np.float32)
    impulse[0] = 0.5
    y = aug(impulse, SR, np.random.default_rng(0))
    np.testing.assert_allclose(y[: ir.shape[0]], 0.5 * ir, atol=1e-6)  # plain convolution, level not restored


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


@pytest.mark.skipif(backend_for("gsm") is None, reason="no GSM 06.10 back end")
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


def test_demo_writes_a_picture_per_augmentation_and_preset(tmp_path: Path) -> None:
    from training.augment.__main__ import PANELS, main

    assert main(["demo", "--out", str(tmp_path), "--overview"]) == 0
    stems = [stem for stem, _, entry in PANELS if all(backend_for(c) for c in entry.get("codecs", []))]
    for name in ["augmentations", "preset_full", "preset_compact", *stems]:
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    covered = {entry["name"] for _, _, entry in PANELS}
    assert covered == set(REGISTRY) - {"one_of", "identity"}  # every transform has its picture


def test_demo_names_an_unreadable_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.augment.__main__ import main

    bad = tmp_path / "clip.wav"
    bad.write_bytes(b"not audio")
    assert main(["demo", "--out", str(tmp_path / "pics"), "--input", str(bad)]) == 2
    assert "clip.wav" in capsys.readouterr().err
