"""training.augment presets and run sections: both presets, overrides, the augmentation seed, the older config
forms, and codecs that this machine cannot run (skipped once at start, never a crash mid-run)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # training/ is a source folder, not an installed package
    sys.path.insert(0, str(ROOT))

from training.audio_io import CodecError, g711_roundtrip  # noqa: E402
from training.augment import (  # noqa: E402
    PRESETS,
    AugmentConfigError,
    Chain,
    Codec,
    apply_overrides,
    build_augmenter,
    codec_status,
    compact_config,
    full_config,
    preset_config,
    resolve,
)
from training.augment import chain as chain_mod  # noqa: E402
from training.augment import presets as presets_mod  # noqa: E402
from training.augment.__main__ import speechlike  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return speechlike(1.0)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_is_seeded_keeps_length_and_varies(preset: str, clip: np.ndarray) -> None:
    aug = build_augmenter({"preset": preset}, SR)
    assert aug is not None
    outs = [aug(clip, np.random.default_rng([3, k])) for k in range(12)]
    again = [aug(clip, np.random.default_rng([3, k])) for k in range(12)]
    for a, b in zip(outs, again, strict=True):
        assert a.shape == clip.shape and a.dtype == np.float32 and np.all(np.isfinite(a))
        np.testing.assert_array_equal(a, b)
    assert len({o.tobytes() for o in outs}) == len(outs)  # every draw differs
    assert max(float(np.max(np.abs(o))) for o in outs) <= 1.0


def test_compact_uses_no_codec_library_and_never_clips(clip: np.ndarray) -> None:
    names = set()

    def walk(entries: list[dict]) -> None:
        for e in entries:
            names.add(e["name"])
            walk(e.get("choices", []))

    walk(compact_config()["augmentations"])
    assert names == {"reverb", "noise", "one_of", "g711", "band_limit", "identity", "gain"}
    aug = build_augmenter({"preset": "compact", "overrides": {"gain": {"gain_db": [12, 12]}}}, SR)
    assert aug is not None
    for k in range(8):
        y = aug(clip, np.random.default_rng(k))
        assert float(np.max(np.abs(y))) == pytest.approx(1.0, abs=1e-5)  # normalised to full scale...
        assert np.sum(np.abs(y) > 0.999) < 5  # ...not clipped flat


def test_overrides_set_probabilities_weights_and_ranges(clip: np.ndarray) -> None:
    # compact with reverb and noise off and only the G.711 channel, mu-law always, no level change:
    # every output is exactly a mu-law round trip
    aug = build_augmenter(
        {
            "preset": "compact",
            "overrides": {
                "reverb": {"p": 0.0},
                "noise": {"p": 0.0},
                "g711": {"weight": 1.0, "mulaw_share": 1.0},
                "band_limit": {"weight": 0.0},
                "identity": {"weight": 0.0},
                "gain": {"gain_db": [0, 0]},
            },
        },
        SR,
    )
    assert aug is not None
    expected = g711_roundtrip(clip, SR, "mulaw")
    for k in range(5):
        np.testing.assert_allclose(aug(clip, np.random.default_rng(k)), expected, atol=1e-7)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"echo": {"p": 1.0}}, "has no 'echo'"),
        ({"g711": {"p": 0.5}}, "takes 'weight', not 'p'"),
        ({"noise": {"weight": 2.0}}, "'weight' is for one_of"),
        ({"noise": 0.5}, "expected a mapping"),
    ],
)
def test_bad_overrides_are_named(overrides: dict, message: str) -> None:
    with pytest.raises(AugmentConfigError, match=message):
        apply_overrides(compact_config(), overrides)


def test_augmentation_seed_gives_its_own_stream(clip: np.ndarray) -> None:
    shared = build_augmenter({"preset": "compact"}, SR)
    own = build_augmenter({"preset": "compact", "seed": 5}, SR)
    other = build_augmenter({"preset": "compact", "seed": 6}, SR)
    assert shared is not None and own is not None and other is not None
    chain = Chain.from_config(compact_config())
    rngs = [np.random.default_rng(k) for k in range(10)]
    # seed null: the chain draws from the crop generator itself (the shipped runs)
    for k in range(10):
        np.testing.assert_array_equal(shared(clip, np.random.default_rng(k)), chain(clip, SR, rngs[k]))
    a = [own(clip, np.random.default_rng(k)).tobytes() for k in range(10)]
    b = [own(clip, np.random.default_rng(k)).tobytes() for k in range(10)]
    c = [other(clip, np.random.default_rng(k)).tobytes() for k in range(10)]
    s = [shared(clip, np.random.default_rng(k)).tobytes() for k in range(10)]
    assert a == b and a != c and a != s


def test_the_older_forms_resolve_to_the_presets() -> None:
    assert resolve({}) == full_config()
    assert resolve({"enabled": True, "params": {}}) == full_config()
    assert resolve({"params": {"chain": "project"}}, seed=4) == full_config(4)
    assert resolve({"params": {"builtin": {}}}) == compact_config()
    assert resolve({"params": {"builtin": {"p_reverb": 0.5}}}) == compact_config(p_reverb=0.5)
    explicit = [{"name": "gain", "p": 0.5}]
    assert resolve({"params": {"augmentations": explicit}})["augmentations"] == explicit
    assert resolve({"augmentations": explicit})["augmentations"] == explicit
    assert resolve({"enabled": False}) is None
    with pytest.raises(AugmentConfigError, match="either 'params'"):
        resolve({"preset": "compact", "params": {"chain": "project"}})
    with pytest.raises(AugmentConfigError, match=r"params.builtin: .*p_echo"):
        resolve({"params": {"builtin": {"p_echo": 0.1}}})
    with pytest.raises(AugmentConfigError, match="sum to at most 1"):
        compact_config(p_telephone=0.8, p_bandlimit=0.4)
    with pytest.raises(AugmentConfigError, match="unknown preset 'large'"):
        preset_config("large")


def test_unavailable_codecs_are_dropped_and_reported_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dropped, skipped = presets_mod.drop_unavailable(full_config(), {"amrnb": "no encoder"})
    codec = [c for c in dropped["augmentations"][2]["choices"] if c["name"] == "codec"]
    assert codec[0]["codecs"] == ["g722", "opus"] and skipped == {"amrnb": "no encoder"}
    none_left, _ = presets_mod.drop_unavailable(full_config(), dict.fromkeys(["g722", "opus", "amrnb"], "x"))
    names = [c["name"] for c in none_left["augmentations"][2]["choices"]]
    assert names == ["telephone_band", "g711", "band_limit"]  # the codec choice goes, the rest keep weights

    monkeypatch.setattr(presets_mod, "unavailable_codecs", lambda: {"opus": "libopus missing"})
    monkeypatch.setattr(presets_mod, "_REPORTED", set())
    with caplog.at_level(logging.WARNING, logger="training.augment.presets"):
        first = build_augmenter({"preset": "full"}, SR)
        second = build_augmenter({"preset": "full"}, SR)
    assert first is not None and second is not None
    assert "opus (libopus missing)" in first.summary()
    assert sum("opus" in r.getMessage() for r in caplog.records) == 1  # once per process, not per build


def test_a_codec_failing_mid_run_passes_the_clip_and_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, clip: np.ndarray
) -> None:
    def broken(*args: object) -> np.ndarray:
        raise CodecError("encoder refused the clip")

    monkeypatch.setattr(chain_mod, "render", broken)
    monkeypatch.setattr(chain_mod, "backend_for", lambda codec: "pyav")
    monkeypatch.setattr(chain_mod, "_FAILED_CODECS", set())
    aug = Codec(codecs=("opus",))
    with caplog.at_level(logging.WARNING, logger="training.augment.chain"):
        outs = [aug(clip, SR, np.random.default_rng(k)) for k in range(3)]
    for y in outs:
        np.testing.assert_array_equal(y, clip)
    assert sum("opus" in r.getMessage() for r in caplog.records) == 1


def test_codec_status_covers_every_codec_and_the_available_ones_work(clip: np.ndarray) -> None:
    status = codec_status()
    assert set(status) == {"g722", "opus", "opus_nb", "amrnb", "gsm"}
    for name, (backend, why) in status.items():
        assert why  # a back end name, or the reason none works
        if backend is not None:
            y = Codec(codecs=(name,))(clip, SR, np.random.default_rng(0))
            assert y.shape == clip.shape and np.all(np.isfinite(y)) and not np.array_equal(y, clip)


def test_antideepfake_g722_channel_is_refused_at_start_without_a_codec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from training.antideepfake.augment import ChannelConfig
    from training.augment import codecs

    monkeypatch.setattr(codecs, "codec_status", lambda: {"g722": (None, "no PyAV, no ffmpeg")})
    assert ChannelConfig(mulaw_prob=0.3).mulaw_prob == 0.3  # G.711 needs no codec library
    with pytest.raises(CodecError, match=r"--g722-prob 0.2: no G.722 codec on this machine \(no PyAV"):
        ChannelConfig(g722_prob=0.2)


def test_preset_name_reads_either_form() -> None:
    from training.augment import preset_name

    assert preset_name({}) == "full"
    assert preset_name({"preset": "compact"}) == "compact"
    assert preset_name({"params": {"builtin": {}}}) == "compact"
    assert preset_name({"params": {"chain": "project"}}) == "full"
    assert preset_name({"augmentations": [{"name": "gain"}]}) == "explicit"
    assert preset_name({"enabled": False, "preset": "compact"}) == "off"
