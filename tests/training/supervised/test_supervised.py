"""Supervised companion: configuration errors, fold selection (family exclusion, dev holdout, resyntheses),
bad input named, the model's time track, a resumed run equal to an uninterrupted one, and export parity."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from training.oneclass.data import AudioCache, DataError, read_manifest
from training.protocol.tiny import build_protocol_corpus
from training.supervised.config import ConfigError, config_from_dict
from training.supervised.data import clip_key, load_clips, select_fold
from training.supervised.model import SupervisedDetector, SupervisedModelConfig

HEADER = ["path", "label", "system", "family", "source", "speaker", "language", "band", "channel", "split",
          "duration", "licence", "clip_id", "parent", "text"]  # fmt: skip


def _row(path, label, system, family, source, split, channel="wideband", clip_id="", parent=""):
    return [path, label, system, family, source, f"{source}-s", "en", "wideband", channel, split, "2.0", "x",
            clip_id, parent, ""]  # fmt: skip


def _write(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_protocol_corpus(tmp_path_factory.mktemp("corpus"), spoof_clips=5, silent_source=True)


def _cfg(manifest: Path, **data) -> object:
    return config_from_dict(
        {
            "data": {"manifest": str(manifest), "max_dev_clips": 6, **data},
            "model": {"pretrained": False},
            "train": {"steps": 2, "batch_size": 2, "eval_every": 2, "checkpoint_every": 1},
            "scoring": {"batch_size": 8},
        }
    )


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match=r"train: unknown key\(s\) \['stepz'\]"):
        config_from_dict({"train": {"stepz": 3}}, "x.yaml")
    with pytest.raises(ConfigError, match="batch_size must be even"):
        config_from_dict({"train": {"batch_size": 3}}, "x.yaml")
    with pytest.raises(ConfigError, match="spoof_dev_fraction"):
        config_from_dict({"data": {"spoof_dev_fraction": 1.5}}, "x.yaml")


def test_fold_selection_excludes_and_holds_out(corpus: Path) -> None:
    fold = select_fold(_cfg(corpus, exclude_families=["vocoder"], exclude_sources=["gen_b"]))
    spoofs = fold.train_spoof + fold.dev_spoof
    assert spoofs and all(c.family != "vocoder" for c in spoofs)
    assert {c.family for c in spoofs} == {"formant", "parametric"}
    assert all(c.source != "gen_b" for c in fold.train_real + fold.dev_real)
    assert {c.split for c in fold.train_real} == {"train"} and {c.split for c in fold.dev_real} == {"dev"}
    # the dev holdout is disjoint from training, and both channel copies of a clip fall on the same side
    train_keys = {clip_key(c) for c in fold.train_spoof}
    dev_keys = {clip_key(c) for c in fold.dev_spoof}
    assert train_keys and dev_keys and not train_keys & dev_keys
    assert {c.channel for c in fold.dev_spoof} == {"wideband", "telephone"}


def test_resyntheses_of_reported_clips_are_not_trained_on(tmp_path: Path) -> None:
    rows = [
        _row("/a/r1.wav", "bonafide", "bonafide", "none", "src", "train", clip_id="r1"),
        _row("/a/r2.wav", "bonafide", "bonafide", "none", "src", "dev", clip_id="r2"),
        _row("/a/r3.wav", "bonafide", "bonafide", "none", "src", "eval", clip_id="r3"),
    ]
    for i in range(30):
        rows.append(_row(f"/a/e{i}.wav", "spoof", "espeak", "formant", "espeak", "dev", clip_id=f"e{i}"))
        rows.append(
            _row(
                f"/a/g{i}.wav", "spoof", "griffinlim", "vocoder", "src", "eval", clip_id=f"g{i}", parent="r3"
            )
        )
        rows.append(
            _row(f"/a/w{i}.wav", "spoof", "world", "vocoder", "src", "dev", clip_id=f"w{i}", parent="r2")
        )
    manifest = _write(tmp_path / "m.csv", rows)
    fold = select_fold(_cfg(manifest))
    systems = {c.system for c in fold.train_spoof + fold.dev_spoof}
    assert systems == {"espeak", "world"}
    assert any("resyntheses of eval real clips kept out" in n for n in fold.notes)


def test_empty_class_and_unknown_exclusions_are_named(tmp_path: Path) -> None:
    rows = [_row("/a/r1.wav", "bonafide", "bonafide", "none", "src", "train"),
            _row("/a/r2.wav", "bonafide", "bonafide", "none", "src", "dev"),
            _row("/a/s1.wav", "spoof", "espeak", "formant", "espeak", "dev")]  # fmt: skip
    manifest = _write(tmp_path / "m.csv", rows)
    with pytest.raises(DataError, match=r"no clips for label spoof without families \['formant'\]"):
        select_fold(_cfg(manifest, exclude_families=["formant"]))
    with pytest.raises(DataError, match="real source 'nowhere' to leave out is not in the manifest"):
        select_fold(_cfg(manifest, exclude_sources=["nowhere"]))
    only_real = _write(tmp_path / "r.csv", rows[:2])
    with pytest.raises(DataError, match="no clips for label spoof"):
        select_fold(_cfg(only_real))


def test_source_without_usable_speech_is_named(corpus: Path) -> None:
    clips = [c for c in read_manifest(corpus) if c.is_real and c.split == "train"]
    warnings: list[str] = []
    kept = load_clips(clips, AudioCache(), "training real speech", lambda c: c.source, warnings.append)
    assert {c.source for c in kept} == {"gen_a", "gen_b"}
    assert any("'silent' has no usable speech" in w for w in warnings)
    silent = [c for c in clips if c.source == "silent"]
    with pytest.raises(DataError, match="no usable clip at all"):
        load_clips(silent, AudioCache(), "training real speech", lambda c: c.source, lambda _: None)


def test_model_time_track_and_frozen_layers() -> None:
    torch.manual_seed(0)
    model = SupervisedDetector(SupervisedModelConfig(pretrained=False, dropout=0.0)).eval()
    x = torch.randn(3, 32000) * 0.1
    score, track = model(x)
    assert score.shape == (3,) and track.shape == (3, 13)
    torch.testing.assert_close(score, track.mean(dim=1))
    short = model(torch.randn(2, 8000) * 0.1)[1]
    assert short.shape == (2, 3)
    frozen = {id(p) for p in model.frozen_parameters()}
    assert frozen and all(not p.requires_grad for p in model.frozen_parameters())
    assert any(p.requires_grad for p in model.parameters() if id(p) not in frozen)
    model.train()
    assert not model.backbone._bn0.training and model.head.training


@pytest.mark.slow
def test_resumed_run_matches_uninterrupted_and_exports_with_parity(corpus: Path, tmp_path: Path) -> None:
    from training.oneclass.checkpoint import load_checkpoint
    from training.supervised.export import export_supervised
    from training.supervised.trainer import SupervisedTrainer

    cfg = _cfg(corpus, exclude_sources=["silent"])
    SupervisedTrainer(cfg, tmp_path / "a", progress=False).run()
    b = SupervisedTrainer(cfg, tmp_path / "b", progress=False)
    b.run(max_steps=1)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 1
    SupervisedTrainer(cfg, tmp_path / "b", progress=False).run()  # a new process would resume the same way
    sa = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    sb = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], msg=k)
    parity_files = [c.path for c in read_manifest(corpus) if c.is_real and c.source == "gen_a"][:4]
    res = export_supervised(tmp_path / "a" / "best.pt", tmp_path / "sup.onnx", parity_files=parity_files)
    assert res["ok"] and max(res["parity"].values()) < 1e-4

    from stream_guard.backends import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(tmp_path / "sup.onnx", provider="cpu", threads=1)
    meta = backend.metadata
    assert meta.family == "supervised" and meta.score_kind == "logit" and meta.map_axes.kind == "time"
    assert meta.map_axes.frame_step_s == pytest.approx(0.16)
    score, track = backend.infer(
        np.random.default_rng(0).standard_normal((2, 32000)).astype(np.float32) * 0.1
    )
    assert score.shape == (2,) and track.shape == (2, 13)
    np.testing.assert_allclose(score, track.mean(axis=1), atol=1e-5)


@pytest.mark.parametrize("preset", ["full", "compact"])
def test_augmentation_preset_is_selectable_and_seeded(preset: str) -> None:
    from training.augment import Chain, build_augmenter, preset_config

    cfg = config_from_dict({"augment": {"preset": preset}})
    augment = build_augmenter(cfg.augment, 16000, cfg.train.seed, check_codecs=False)
    assert augment is not None and augment.preset == preset
    assert augment.chain.to_config() == Chain.from_config(preset_config(preset)).to_config()
    x = (0.05 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    outs = [augment(x, np.random.default_rng(k)) for k in (1, 1, 2, 3, 4)]
    assert all(o.shape == x.shape and o.dtype == np.float32 for o in outs)
    np.testing.assert_array_equal(outs[0], outs[1])  # same crop RNG, same augmentation (resumable runs)
    assert len({o.tobytes() for o in outs[1:]}) > 1


def test_older_augment_forms_keep_their_meaning() -> None:
    from training.augment import compact_config, full_config, resolve

    def chain_of(section: dict) -> dict | None:
        return resolve(config_from_dict({"augment": section}).augment)

    assert chain_of({"enabled": True}) == full_config()  # the shipped configs: the full chain
    assert chain_of({"params": {"chain": "project"}}) == full_config()
    assert chain_of({"params": {"builtin": {"p_noise": 0.5}}}) == compact_config(p_noise=0.5)
    assert chain_of({"enabled": False}) is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"params": {"augmentations": [{"name": "nope"}]}}, "unknown augmentation 'nope'"),
        ({"preset": "huge"}, "unknown preset 'huge'"),
        ({"overrides": {"reverb": {"p": 0.1}, "echo": {"p": 1.0}}}, "has no 'echo'"),
        ({"preset": "compact", "overrides": {"noise": {"snr": [1, 2]}}}, "noise: .*snr"),
    ],
)
def test_bad_augment_section_names_the_file(section: dict, message: str) -> None:
    from training.oneclass.config import ConfigError

    with pytest.raises(ConfigError, match=f"run.yaml: augment: .*{message}"):
        config_from_dict({"augment": section}, "run.yaml")
