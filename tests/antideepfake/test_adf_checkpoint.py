"""Released-format checkpoints (fairseq names in .ckpt and .safetensors): round trips and strict errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.antideepfake.architectures import ARCHITECTURES
from training.antideepfake.checkpoint import (
    SSL_PREFIX,
    CheckpointError,
    load_detector,
    pretraining_shapes,
    released_key_map,
    released_state,
    save_released,
    save_training_checkpoint,
)
from training.antideepfake.model import AntiDeepfakeDetector

FAMILIES = sorted(ARCHITECTURES)


def _tiny(name: str, seed: int = 0) -> AntiDeepfakeDetector:
    torch.manual_seed(seed)
    return AntiDeepfakeDetector(ARCHITECTURES[name].tiny()).eval()


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_released_format_round_trip_gives_identical_logits(name: str, suffix: str, tmp_path: Path) -> None:
    model = _tiny(name)
    path = save_released(model, tmp_path / f"{name}{suffix}")
    loaded, report = load_detector(path, model.spec)
    wav = torch.randn(2, 12_000)
    with torch.inference_mode():
        ref, out = model(wav), loaded(wav)
    assert torch.equal(ref.logits, out.logits)
    assert torch.equal(ref.frame_logits, out.frame_logits)
    assert report.layout == "fairseq"
    assert report.head_loaded
    assert len(report.pretraining_dropped) == len(pretraining_shapes(model.spec))
    assert report.mapped + len(report.pretraining_dropped) == report.tensors_in_file


@pytest.mark.parametrize("name", FAMILIES)
def test_key_map_covers_full_size_architecture_one_to_one(name: str) -> None:
    """Every tensor of the real-size detector has exactly one released name, with the released shapes."""
    with torch.device("meta"):
        model = AntiDeepfakeDetector(ARCHITECTURES[name])
    key_map = released_key_map(model)
    own = model.state_dict()
    assert sorted(key_map.values()) == sorted(own)
    assert len(set(key_map.values())) == len(key_map)
    assert all(k.startswith(SSL_PREFIX) or k.startswith("proj_fc.") for k in key_map)
    spec = ARCHITECTURES[name]
    # fairseq shapes that pin the layout: conv kernel sizes, positional conv, projection, head
    assert tuple(own[key_map[SSL_PREFIX + "feature_extractor.conv_layers.0.0.weight"]].shape) == (512, 1, 10)
    assert tuple(own[key_map[SSL_PREFIX + "encoder.pos_conv.0.weight_v"]].shape) == (
        spec.hidden,
        spec.hidden // 16,
        128,
    )
    assert tuple(own[key_map[SSL_PREFIX + "encoder.pos_conv.0.weight_g"]].shape) == (1, 1, 128)
    assert tuple(own[key_map[SSL_PREFIX + "post_extract_proj.weight"]].shape) == (spec.hidden, 512)
    assert tuple(own[key_map["proj_fc.weight"]].shape) == (2, spec.hidden)


def test_tensor_names_follow_fairseq_modules() -> None:
    state = released_state(_tiny("w2v_small"))
    assert SSL_PREFIX + "feature_extractor.conv_layers.0.2.weight" in state  # GroupNorm on layer 0 only
    assert SSL_PREFIX + "feature_extractor.conv_layers.1.2.1.weight" not in state
    assert SSL_PREFIX + "feature_extractor.conv_layers.0.0.bias" not in state
    state = released_state(_tiny("mms_300m"))
    assert SSL_PREFIX + "feature_extractor.conv_layers.6.2.1.weight" in state  # LayerNorm after every conv
    assert SSL_PREFIX + "encoder.layers.1.self_attn_layer_norm.weight" in state
    assert SSL_PREFIX + "quantizer.vars" in state
    state = released_state(_tiny("hubert_xl"))
    assert SSL_PREFIX + "label_embs_concat" in state and SSL_PREFIX + "quantizer.vars" not in state


def test_architecture_is_read_off_a_full_size_checkpoint(tmp_path: Path) -> None:
    """A released file names no architecture; the loader must recognise it from the tensors."""
    spec = ARCHITECTURES["w2v_small"]
    state = {}
    with torch.device("meta"):
        meta_model = AntiDeepfakeDetector(spec)
    inverse = {v: k for k, v in released_key_map(meta_model).items()}
    for key, tensor in meta_model.state_dict().items():
        state[inverse[key]] = torch.zeros(tensor.shape)
    for key, shape in pretraining_shapes(spec).items():
        state[SSL_PREFIX + key] = torch.zeros(shape)
    path = tmp_path / "w2v_small.ckpt"
    torch.save(state, path)
    model, report = load_detector(path)
    assert report.arch == "w2v_small" and report.candidates == ["w2v_small"]
    assert model.num_parameters() == meta_model.num_parameters()


def test_wrong_architecture_names_missing_and_unexpected_keys(tmp_path: Path) -> None:
    path = save_released(_tiny("w2v_small"), tmp_path / "small.ckpt")
    with pytest.raises(CheckpointError) as err:
        load_detector(path, ARCHITECTURES["mms_300m"].tiny())
    text = str(err.value)
    assert str(path) in text
    assert "does not match architecture mms_300m-tiny" in text
    assert "missing keys" in text and "conv_layers.1.2.1.weight" in text
    assert "unexpected keys" in text and "conv_layers.0.2.weight" in text
    assert "group-norm feature extractor" in text


def test_shape_mismatch_is_reported(tmp_path: Path) -> None:
    small = ARCHITECTURES["mms_300m"].tiny(hidden=32)
    wide = ARCHITECTURES["mms_300m"].tiny(hidden=48)
    path = save_released(AntiDeepfakeDetector(small), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match=r"shape mismatches \(\d+\): .*\(expected"):
        load_detector(path, wide)


def test_missing_head_is_an_error_unless_allowed(tmp_path: Path) -> None:
    model = _tiny("xlsr_1b")
    state = {k: v for k, v in released_state(model).items() if not k.startswith("proj_fc.")}
    path = tmp_path / "nohead.ckpt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="missing keys .*proj_fc"):
        load_detector(path, model.spec)
    loaded, report = load_detector(path, model.spec, allow_missing_head=True)
    assert not report.head_loaded
    with torch.inference_mode():
        a = model.frame_embeddings(torch.randn(1, 8000).clone())
    assert a.shape[-1] == model.spec.hidden


def test_fairseq_wrapper_dict_is_unwrapped(tmp_path: Path) -> None:
    model = _tiny("w2v_large")
    path = tmp_path / "wrapped.ckpt"
    torch.save({"model": released_state(model)}, path)
    loaded, _ = load_detector(path, model.spec)
    wav = torch.randn(1, 9000)
    with torch.inference_mode():
        assert torch.equal(model(wav).logits, loaded(wav).logits)


def test_training_checkpoint_stores_its_architecture(tmp_path: Path) -> None:
    model = _tiny("hubert_xl")
    path = save_training_checkpoint(tmp_path / "run" / "last.ckpt", model, step=7)
    loaded, report = load_detector(path)
    assert report.layout == "training" and report.arch == model.spec.name
    assert report.training_state["step"] == 7
    with pytest.raises(CheckpointError, match="holds a hubert_xl-tiny model"):
        load_detector(path, ARCHITECTURES["w2v_small"].tiny())


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_truncated_file(suffix: str, tmp_path: Path) -> None:
    path = save_released(_tiny("mms_1b"), tmp_path / f"full{suffix}")
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut.*truncated"):
        load_detector(cut, ARCHITECTURES["mms_1b"].tiny())


def test_non_checkpoints(tmp_path: Path) -> None:
    wav = tmp_path / "speech.wav"
    wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40))
    with pytest.raises(CheckpointError, match="speech.wav: not a checkpoint: this is an audio file"):
        load_detector(wav)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.txt: not a checkpoint"):
        load_detector(text)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_detector(empty)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_detector(tmp_path / "absent.ckpt")
    other = tmp_path / "other.ckpt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(CheckpointError, match="not an AntiDeepfake"):
        load_detector(other)
    blob = tmp_path / "list.ckpt"
    torch.save([torch.zeros(1)], blob)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_detector(blob)


def test_pickled_objects_need_explicit_trust(tmp_path: Path) -> None:
    import argparse

    path = tmp_path / "fairseq_style.pt"
    state = released_state(_tiny("w2v_small"))
    torch.save({"args": argparse.Namespace(arch="wav2vec2"), "model": state}, path)
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        load_detector(path, ARCHITECTURES["w2v_small"].tiny())
    loaded, _ = load_detector(path, ARCHITECTURES["w2v_small"].tiny(), trust_pickle=True)
    assert loaded.spec.family == "wav2vec2"


def test_bare_fairseq_ssl_checkpoint_starts_a_finetune(tmp_path: Path) -> None:
    """A fairseq pretraining checkpoint (no ``m_ssl.model.`` prefix, no head) loads with a fresh head."""
    model = _tiny("w2v_large")
    bare = {k[len(SSL_PREFIX) :]: v for k, v in released_state(model).items() if k.startswith(SSL_PREFIX)}
    path = tmp_path / "ssl.pt"
    torch.save({"model": bare}, path)
    loaded, report = load_detector(path, model.spec)
    assert report.layout == "fairseq-ssl" and not report.head_loaded
    wav = torch.randn(1, 8000)
    with torch.inference_mode():
        assert torch.equal(model.frame_embeddings(wav), loaded.frame_embeddings(wav))


def test_finetune_can_start_from_a_released_checkpoint(tmp_path: Path) -> None:
    from training.antideepfake.finetune import FinetuneConfig, build_model

    model = _tiny("mms_300m")
    path = save_released(model, tmp_path / "mms.ckpt")
    cfg = FinetuneConfig(
        train_manifest="unused.csv", out_dir=str(tmp_path), arch="mms_300m-tiny", init=str(path)
    )
    start, origin = build_model(cfg)
    assert "fairseq layout" in origin
    assert torch.equal(start.head.weight, model.head.weight)
    with pytest.raises(CheckpointError, match="name its architecture with --arch"):
        build_model(
            FinetuneConfig(train_manifest="unused.csv", out_dir=str(tmp_path), arch="", init=str(path))
        )
