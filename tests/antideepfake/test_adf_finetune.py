"""CI smoke run of fine-tuning (tiny model, a few steps, RawBoost on), resume, evaluation and CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.antideepfake.__main__ import main
from training.antideepfake.augment import RawBoostConfig
from training.antideepfake.data import BatchPlan
from training.antideepfake.finetune import FinetuneConfig, Finetuner


def _cfg(tiny_corpus: Path, out: Path, steps: int) -> FinetuneConfig:
    return FinetuneConfig(
        train_manifest=str(tiny_corpus),
        out_dir=str(out),
        arch="w2v_small-tiny",
        steps=steps,
        lr=1e-3,
        warmup_steps=2,
        plan=BatchPlan(max_batch_seconds=8.0, crop_min_s=1.0, crop_max_s=2.0),
        rawboost=RawBoostConfig(algo=5),
        valid_every=3,
        save_every=2,
        progress=False,
    )


def test_smoke_finetune_with_rawboost_then_resume(tiny_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = Finetuner(_cfg(tiny_corpus, out, steps=4)).run()
    assert summary["step"] == 4
    assert (out / "last.ckpt").exists() and (out / "config.json").exists()
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["event"] == "step"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 for r in steps)
    assert any(r["event"] == "valid" for r in records)

    resumed = Finetuner(_cfg(tiny_corpus, out, steps=6), resume=True)
    assert resumed.step == 4
    assert resumed.run()["step"] == 6
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "step"] == [1, 2, 3, 4, 5, 6]


def test_cli_finetune_and_evaluate(
    tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    rc = main(
        ["finetune", "--train", str(tiny_corpus), "--out", str(out), "--arch", "hubert_xl", "--tiny",
         "--steps", "2", "--warmup", "1", "--max-batch-seconds", "6", "--crop-min", "1", "--crop-max", "2",
         "--valid-every", "2", "--mulaw-prob", "0.5", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    report_dir = tmp_path / "eval"
    rc = main(
        ["evaluate", "--model", str(out / "last.ckpt"), "--manifest", str(tiny_corpus), "--split", "dev",
         "--out", str(report_dir), "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    report = json.loads((report_dir / "report.json").read_text())
    assert report["pooled"]["n_real"] == 4 and report["pooled"]["n_fake"] == 4
    assert {r["name"] for r in report["systems"]} == {"buzz-a", "buzz-b"}
    assert "Per spoof system" in (report_dir / "report.md").read_text()
    assert len((report_dir / "scores.csv").read_text().splitlines()) == 9


def test_cli_reports_user_errors_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a model")
    assert main(["inspect", str(junk)]) == 2
    err = capsys.readouterr().err
    assert "junk.ckpt: not a checkpoint" in err and "Traceback" not in err
    bad_manifest = tmp_path / "m.csv"
    bad_manifest.write_text("path,label\nmissing.wav,real\nother.wav,fake\n")
    argv = ["finetune", "--train", str(bad_manifest), "--out", str(tmp_path / "r"), "--tiny"]
    rc = main([*argv, "--no-progress", "--train-split", ""])
    assert rc == 2
    assert "missing.wav: no such audio file" in capsys.readouterr().err
