"""STFPM model: shapes for any length, strict teacher loading, DS maths, pooling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.oneclass.backbones import BackboneError, build_backbone, build_lite0, lite0_weights_path
from training.oneclass.model import STFPM, DSAccumulator, ModelConfig, pool_scores


@pytest.fixture(scope="module")
def model() -> STFPM:
    torch.manual_seed(0)
    return STFPM(ModelConfig()).eval()


@pytest.mark.parametrize("samples", [8000, 12345, 32000])
def test_shapes_any_length(model: STFPM, samples: int) -> None:
    score, amap = model(torch.randn(3, samples) * 0.1)
    frames = model.frontend.cfg.frames(samples)
    assert score.shape == (3,)
    assert amap.shape == (3, 20, math.ceil(math.ceil(frames / 2) / 2))
    assert torch.isfinite(amap).all()


def test_map_geometry(model: STFPM) -> None:
    g = model.map_geometry()
    assert g["frame_step_s"] == pytest.approx(0.04)
    assert len(g["freq_hz"]) == 20
    assert all(a < b for a, b in zip(g["freq_hz"], g["freq_hz"][1:], strict=False))


def test_teacher_is_pretrained_and_frozen(model: STFPM) -> None:
    ref = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    assert torch.equal(model.teacher._conv_stem.weight, ref["_conv_stem.weight"])
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert all(p.requires_grad for p in model.student.parameters())
    model.train()
    assert not model.teacher.training
    model.eval()


def test_strict_loading_rejects_a_mismatched_file(tmp_path) -> None:
    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    del state["_blocks.3._bn1.weight"]
    bad = tmp_path / "lite0-missing.pth"
    torch.save(state, bad)
    with pytest.raises(BackboneError, match="lite0-missing.pth"):
        build_lite0(True, bad)
    with pytest.raises(BackboneError, match="not found"):
        build_lite0(True, tmp_path / "nope.pth")


def test_resnet18_needs_a_weight_file_and_loads_one_strictly(tmp_path) -> None:
    with pytest.raises(BackboneError, match="resnet18"):
        build_backbone("resnet18", pretrained=True)
    from training.oneclass.backbones import ResNet18

    path = tmp_path / "resnet18.pth"
    torch.save(ResNet18().state_dict(), path)
    feats = build_backbone("resnet18", True, path).eval()(torch.zeros(1, 3, 80, 64))
    assert [f.shape[1] for f in feats] == [64, 128, 256]
    assert [f.shape[2] for f in feats] == [20, 10, 5]


def test_ds_accumulator_pools_over_batch_and_time() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((n, 4, 3, t)).astype(np.float32) for n, t in ((2, 5), (3, 7))]
    acc = DSAccumulator()
    for p in parts:
        acc.add([torch.from_numpy(p)])
    mu, sigma = acc.finish()
    flat = np.concatenate([p.transpose(1, 2, 0, 3).reshape(4, 3, -1) for p in parts], axis=2)
    np.testing.assert_allclose(mu[0][0, :, :, 0].numpy(), flat.mean(axis=2), atol=1e-5)
    np.testing.assert_allclose(sigma[0][0, :, :, 0].numpy(), flat.std(axis=2, ddof=1), atol=1e-5)


def test_ds_map_is_the_scaled_discrepancy(model: STFPM) -> None:
    """DS on: sum_l log(1 + Up(sum_c ((e - mu) / (sigma + eps))^2)); DS off: prod_l Up(0.5 ||e||^2)."""
    x = torch.randn(2, 16000) * 0.1
    discs = model.discrepancies(x)
    rng = np.random.default_rng(1)
    mus = [
        torch.from_numpy(rng.normal(0, 0.01, (1, e.shape[1], e.shape[2], 1)).astype(np.float32))
        for e in discs
    ]
    sigmas = [torch.from_numpy(rng.uniform(0.01, 0.1, m.shape).astype(np.float32)) for m in mus]
    model.set_ds_stats(mus, sigmas)
    size = discs[0].shape[2:]
    up = lambda t: torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)  # noqa: E731
    expect_ds = sum(
        torch.log(up((((e - m) / (s + 0.05)) ** 2).sum(1, keepdim=True)) + 1.0)
        for e, m, s in zip(discs, mus, sigmas, strict=True)
    )[:, 0]
    expect_plain = math.prod(up(0.5 * (e**2).sum(1, keepdim=True)) for e in discs)[:, 0]
    torch.testing.assert_close(model.maps(discs, ds=True), expect_ds, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model.maps(discs, ds=False), expect_plain, rtol=1e-4, atol=1e-8)


def test_pooling() -> None:
    amap = torch.arange(200, dtype=torch.float32).reshape(1, 10, 20)
    assert float(pool_scores(amap, "max", 0.01)) == 199.0
    assert float(pool_scores(amap, "topk", 0.02)) == pytest.approx((199 + 198 + 197 + 196) / 4)
    assert float(pool_scores(amap[:, :1, :5], "topk", 0.01)) == 4.0  # k is at least 1
    with pytest.raises(ValueError):
        pool_scores(amap, "median", 0.1)


def test_variants_agree_with_forward(model: STFPM) -> None:
    x = torch.randn(2, 24000) * 0.1
    v = model.variants(x)
    score, _ = model(x)
    torch.testing.assert_close(v["ds_topk"], score)
    assert set(v) == {"ds_max", "ds_topk", "ds_mean", "plain_max", "plain_topk", "plain_mean"}
    assert (v["ds_max"] >= v["ds_topk"] - 1e-6).all()
    assert (v["ds_topk"] >= v["ds_mean"] - 1e-6).all()


def test_training_reduces_the_loss_on_a_fixed_batch(speech: np.ndarray) -> None:
    torch.manual_seed(0)
    m = STFPM(ModelConfig()).train()
    x = torch.from_numpy(np.stack([speech[:16000], speech[16000:32000]]))
    opt = torch.optim.Adam(m.student.parameters(), lr=1e-3)
    first = float(m.loss(x))
    for _ in range(5):
        opt.zero_grad()
        loss = m.loss(x)
        loss.backward()
        opt.step()
    assert float(m.loss(x)) < first
