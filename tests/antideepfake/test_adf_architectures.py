"""The released architectures: sizes, layouts, frame arithmetic."""

from __future__ import annotations

import pytest
import torch

from training.antideepfake.architectures import ARCHITECTURES, FRAME_HOP, get_arch, num_frames
from training.antideepfake.model import AntiDeepfakeDetector

# Parameter counts published with the checkpoints (millions; the pretraining heads are not part of the
# detector).
PUBLISHED_M = {
    "w2v_small": 95,
    "w2v_large": 317,
    "mms_300m": 317,
    "mms_1b": 965,
    "xlsr_1b": 965,
    "xlsr_2b": 2200,
    "hubert_xl": 964,
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_parameter_count_matches_published_size(name: str) -> None:
    with torch.device("meta"):
        model = AntiDeepfakeDetector(ARCHITECTURES[name])
    millions = model.num_parameters() / 1e6
    assert abs(millions - PUBLISHED_M[name]) / PUBLISHED_M[name] < 0.025, millions


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_hf_config_reflects_fairseq_layout(name: str) -> None:
    spec = ARCHITECTURES[name]
    cfg = spec.hf_config()
    assert cfg.hidden_size == spec.hidden and cfg.num_hidden_layers == spec.layers
    assert cfg.feat_extract_norm == spec.extractor
    assert cfg.do_stable_layer_norm == spec.layer_norm_first
    assert cfg.conv_bias == spec.conv_bias
    assert cfg.apply_spec_augment is False  # AntiDeepfake runs the backbone with mask=False


def test_only_w2v_small_uses_the_base_layout() -> None:
    base = [n for n, s in ARCHITECTURES.items() if s.extractor == "group"]
    assert base == ["w2v_small"]
    assert ARCHITECTURES["hubert_xl"].conv_bias is False
    assert all(s.conv_bias for n, s in ARCHITECTURES.items() if n not in ("w2v_small", "hubert_xl"))


def test_aliases_and_unknown_names() -> None:
    assert get_arch("nii-yamagishilab/mms-300m-anti-deepfake-nda").name == "mms_300m"
    assert get_arch("hubert_xlarge_ll60k").name == "hubert_xl"
    assert get_arch("xlsr_2b-tiny").hidden == 32
    with pytest.raises(KeyError, match="unknown AntiDeepfake architecture"):
        get_arch("wav2vec3")


@pytest.mark.parametrize("seconds", [0.5, 1.0, 2.0, 4.0, 13.0, 30.0])
def test_frame_count_is_the_20ms_rate(seconds: float) -> None:
    samples = int(seconds * 16_000)
    frames = num_frames(samples)
    assert frames == (samples - 400) // FRAME_HOP + 1
    assert abs(frames - seconds / 0.02) <= 1.5


def test_frames_below_one_receptive_field() -> None:
    assert num_frames(399) == 0
    assert num_frames(400) == 1
