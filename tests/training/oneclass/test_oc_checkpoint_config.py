"""Checkpoints refuse to load when incomplete or corrupt; configs refuse unknown keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.oneclass.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from training.oneclass.config import ConfigError, config_from_dict, load_config

CONFIGS = Path(__file__).resolve().parents[3] / "training" / "oneclass" / "configs"


def test_round_trip(tmp_path: Path) -> None:
    path = save_checkpoint({"w": torch.arange(5), "epoch": 3}, tmp_path / "ck.pt")
    got = load_checkpoint(path)
    assert got["epoch"] == 3 and torch.equal(got["w"], torch.arange(5))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


@pytest.mark.parametrize("cut", [1, 10, 40, 1000])
def test_truncated_checkpoint_is_refused(tmp_path: Path, cut: int) -> None:
    path = save_checkpoint({"w": torch.randn(300)}, tmp_path / "ck.pt")
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with pytest.raises(CheckpointError, match="ck.pt"):
        load_checkpoint(path)


def test_corrupted_checkpoint_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint({"w": torch.randn(300)}, tmp_path / "ck.pt")
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


def test_plain_torch_file_is_refused(tmp_path: Path) -> None:
    torch.save({"w": 1}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="plain.pt"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.model.pooling in ("max", "topk")


def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lr_typo"):
        config_from_dict({"train": {"lr_typo": 1}})
    with pytest.raises(ConfigError, match="modle"):
        config_from_dict({"modle": {}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
