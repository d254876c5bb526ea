"""End to end on a tiny generated corpus: train a few steps, fit DS, select on dev, export, parity, load in
the runtime, calibrate without torch, evaluate. This is the CI version of the full recipe."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from training.oneclass.config import config_from_dict
    from training.oneclass.tiny import build_tiny_corpus
    from training.oneclass.trainer import Trainer

    root = tmp_path_factory.mktemp("e2e")
    manifest = build_tiny_corpus(root / "corpus", clips_per_split=2)
    cfg = config_from_dict(
        {
            "name": "ci",
            "data": {"manifest": str(manifest), "max_dev_clips": 8},
            "train": {"epochs": 1, "crops_per_epoch": 8, "batch_size": 4, "checkpoint_every": 1},
            "scoring": {"batch_size": 8},
        }
    )
    run = root / "run"
    best = Trainer(cfg, run).run()
    return {"root": root, "run": run, "best": best, "manifest": manifest, "cfg": cfg}


@pytest.mark.slow
def test_train_export_parity_load_calibrate(trained: dict) -> None:
    import onnx

    from export.oneclass import export_oneclass
    from stream_guard.bundle import read_metadata
    from stream_guard.cli.calibrate import calibrate_bundle

    run = trained["run"]
    assert (run / "config.yaml").exists() and (run / "last.pt").exists() and trained["best"].exists()
    out = trained["root"] / "bundle.onnx"
    res = export_oneclass(trained["best"], out)
    assert res["ok"] and max(res["parity"].values()) <= 1e-4
    assert res["bytes"] < 20e6
    meta = read_metadata(out)
    assert meta.family == "stfpm" and meta.sample_rate == 16000 and meta.min_audio_s == 0.5
    assert len(meta.map_axes.freq_hz) == 20 and meta.map_axes.frame_step_s == pytest.approx(0.04)
    assert meta.extra["parity"]["max_abs_diff"]["score"] <= 1e-4
    ds = meta.extra["discrepancy_scaling"]
    model = onnx.load(str(out))
    assert [o.name for o in model.graph.output] == ["score", "anomaly_map"]
    assert {"audio"} == {i.name for i in model.graph.input}
    inits = {i.name for i in model.graph.initializer}
    assert set(ds["mu_initializers"]) <= inits and set(ds["scale_initializers"]) <= inits
    assert model.opset_import[0].version >= 18

    import onnxruntime as ort

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch, samples in ((1, 8000), (5, 32000), (2, 20001)):
        score, amap = sess.run(
            ["score", "anomaly_map"], {"audio": np.zeros((batch, samples), np.float32) + 0.01}
        )
        assert score.shape == (batch,) and amap.shape[:2] == (batch, 20)

    # calibrate from the runtime side: refit DS and the threshold on "site" real speech (telephone channel)
    site = trained["root"] / "site"
    site.mkdir()
    for p in sorted((trained["manifest"].parent / "dev" / "telephone").glob("bonafide_*.wav")):
        (site / p.name).write_bytes(p.read_bytes())
    for p in sorted((trained["manifest"].parent / "eval" / "telephone").glob("bonafide_*.wav")):
        (site / ("e" + p.name)).write_bytes(p.read_bytes())
    cal_out = trained["root"] / "site.onnx"
    result = calibrate_bundle(out, site, cal_out)
    assert result.ds_refitted and result.windows >= 10
    new = read_metadata(cal_out)
    assert new.calibration.threshold == pytest.approx(result.threshold_after)
    assert "site/" in new.calibration.fitted_on
    before = {
        i.name: onnx.numpy_helper.to_array(i)
        for i in model.graph.initializer
        if i.name in ds["mu_initializers"]
    }
    after_model = onnx.load(str(cal_out))
    after = {i.name: onnx.numpy_helper.to_array(i) for i in after_model.graph.initializer if i.name in before}
    assert any(not np.allclose(before[k], after[k]) for k in before), "DS statistics were not rewritten"

    # the runtime backend loads the exported bundle
    from stream_guard.backends import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(str(out), provider="cpu")
    score, amap = backend.infer(np.zeros((2, 32000), np.float32) + 0.01)
    assert score.shape == (2,) and amap.shape[:2] == (2, 20)
    backend.close()


@pytest.mark.slow
def test_evaluate_writes_the_report(trained: dict) -> None:
    from training.oneclass.evaluate import evaluate_run

    md = evaluate_run(trained["run"], n_boot=20)
    text = md.read_text()
    assert "DS, top-k mean (shipped)" in text and "plain STFPM" in text
    metrics = json.loads((trained["run"] / "metrics.json").read_text())
    pooled = metrics["scorers"]["ds_topk"]["channels"]["pooled"]
    assert 0.0 <= pooled["pooled"]["eer"] <= 1.0 and "per_system" in pooled
    assert set(pooled["false_alarms_per_source"]) == {"generated"}
    for name in ("det_wideband.png", "det_telephone.png", "map_real.png", "map_synthetic.png"):
        assert (trained["run"] / name).stat().st_size > 1000


@pytest.mark.slow
def test_resume_after_interruption(trained: dict, tmp_path: Path) -> None:
    """A run stopped mid-epoch resumes from last.pt and ends with the same student as an uninterrupted run."""
    import torch

    from training.oneclass.checkpoint import load_checkpoint
    from training.oneclass.trainer import Trainer

    cfg = trained["cfg"]
    cfg.train.crops_per_epoch = 12
    cfg.train.batch_size = 4
    Trainer(cfg, tmp_path / "a").run(max_steps=2)
    assert load_checkpoint(tmp_path / "a" / "last.pt")["step"] == 2
    Trainer(cfg, tmp_path / "a").run()
    Trainer(cfg, tmp_path / "b").run()
    a = load_checkpoint(tmp_path / "a" / "last.pt")["student"]
    b = load_checkpoint(tmp_path / "b" / "last.pt")["student"]
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
