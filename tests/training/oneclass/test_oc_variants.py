"""One-class scoring variants: DS statistics per channel, mean pooling, pyramid levels, refit overrides."""

from __future__ import annotations

import pytest
import torch

from training.oneclass.config import ConfigError
from training.oneclass.model import STFPM, DSAccumulator, ModelConfig, pool_scores
from training.oneclass.refit import parse_override


def test_ds_per_channel_pools_over_frequency_rows_too() -> None:
    torch.manual_seed(0)
    e = [torch.randn(2, 3, 4, 5) * torch.arange(1, 5).view(1, 1, 4, 1)]  # spread grows with the row
    per_row, per_channel = DSAccumulator(), DSAccumulator(pool_freq=True)
    per_row.add(e)
    per_channel.add(e)
    (mu_r,), (sd_r,) = per_row.finish()
    (mu_c,), (sd_c,) = per_channel.finish()
    assert mu_c.shape == mu_r.shape == (1, 3, 4, 1)
    flat = e[0].permute(1, 0, 2, 3).reshape(3, -1).to(torch.float64)  # every cell of a channel
    torch.testing.assert_close(mu_c[0, :, 0, 0].double(), flat.mean(dim=1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sd_c[0, :, 0, 0].double(), flat.std(dim=1), rtol=1e-5, atol=1e-6)
    assert torch.equal(sd_c[:, :, :1], sd_c[:, :, 3:])  # one value broadcast over the rows
    assert not torch.allclose(sd_r[:, :, :1], sd_r[:, :, 3:])  # per row they differ


def test_mean_pooling() -> None:
    amap = torch.tensor([[[0.0, 1.0], [2.0, 5.0]]])
    assert pool_scores(amap, "mean", 0.01).item() == pytest.approx(2.0)
    assert pool_scores(amap, "max", 0.01).item() == 5.0


def test_levels_subset_in_map_and_loss() -> None:
    torch.manual_seed(0)
    full = STFPM(ModelConfig()).eval()
    only = STFPM(ModelConfig(levels=[0, 1])).eval()
    only.student.load_state_dict(full.student.state_dict())
    audio = torch.randn(2, 16000) * 0.1
    discs = full.discrepancies(audio)
    # without DS the map is the product of the kept levels: leaving level 2 out divides it out
    size = discs[0].shape[2:]
    lvl2 = STFPM._up(0.5 * (discs[2] * discs[2]).sum(dim=1, keepdim=True), size)[:, 0]
    torch.testing.assert_close(
        only.maps(discs, ds=False) * lvl2, full.maps(discs, ds=False), rtol=1e-4, atol=0
    )
    parts = [0.5 * (e * e).sum(dim=1).mean() for e in discs]
    torch.testing.assert_close(only.loss(audio), parts[0] + parts[1], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(full.loss(audio), parts[0] + parts[1] + parts[2], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="levels must be a non-empty subset"):
        STFPM(ModelConfig(levels=[3]), pretrained_teacher=False)


def test_refit_overrides_are_typed_and_checked() -> None:
    assert parse_override("ds_pool=time_freq") == ("ds_pool", "time_freq")
    assert parse_override("levels=1,0") == ("levels", [0, 1])
    assert parse_override("pooling=mean") == ("pooling", "mean")
    assert parse_override("topk_fraction=0.05") == ("topk_fraction", 0.05)
    for bad, msg in (
        ("ds_pool=freq", "ds_pool must be one of"),
        ("levels=0,5", "levels is a comma-separated list"),
        ("pooling=median", "pooling must be one of"),
        ("lr=1", "expected KEY=VALUE"),
        ("topk_fraction=2", r"topk_fraction is a number in \(0, 1\]"),
    ):
        with pytest.raises(ConfigError, match=msg):
            parse_override(bad)
