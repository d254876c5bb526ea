"""The leave-one-out protocol end to end on the generated corpus (two sources, two families, a few steps),
its resumption, and its refusal of unusable manifests before any training."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from stream_guard.bundle import default_bundle_path
from training.oneclass.data import DataError
from training.protocol.__main__ import main
from training.protocol.config import ConfigError, fold_bundle, load_protocol_config
from training.protocol.runner import ProtocolRunner, summary_markdown, trained_sources
from training.protocol.tiny import build_protocol_corpus

REPO = Path(__file__).resolve().parents[3]


def _config(tmp: Path, manifest: Path, **over) -> Path:
    raw = yaml.safe_load((REPO / "training/protocol/configs/tiny.yaml").read_text())
    raw.update(manifest=str(manifest), supervised=str(REPO / "training/supervised/configs/tiny.yaml"), **over)
    if "oneclass_bundle" in over and "oneclass_bundles" not in over:
        raw.pop("oneclass_bundles", None)  # the older single-bundle key in place of tiny.yaml's rows
    path = tmp / "protocol.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_manifest_without_a_class_is_refused_before_training(tmp_path: Path, capsys) -> None:
    manifest = build_protocol_corpus(tmp_path / "c", clips_per_speaker=1, spoof_clips=1)
    with open(manifest, newline="") as fh:
        rows = list(csv.reader(fh))
    real_only = tmp_path / "real.csv"
    with open(real_only, "w", newline="") as fh:
        csv.writer(fh).writerows([r for r in rows if r[1] != "spoof"])
    cfg = _config(tmp_path, real_only)
    assert main(["run", "--config", str(cfg), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "no clips for label spoof (synthetic)" in err and "real.csv" in err
    assert not (tmp_path / "run" / "folds").exists()
    cfg2 = _config(tmp_path, manifest, family_folds=["neural"])
    assert main(["run", "--config", str(cfg2), "--run-dir", str(tmp_path / "run2")]) == 2
    assert "family fold 'neural': no synthetic clip of that family" in capsys.readouterr().err


@pytest.mark.slow  # about 15 s on an idle 2-core machine, more under load
def test_tiny_protocol_end_to_end_and_resume(tmp_path: Path) -> None:
    """Two one-class rows (a "baseline" that trained on gen_a, and "oneclass", the fusion partner), the
    supervised model and the fusion, every table; then the resume and rescoring rules."""
    sys.path.insert(0, str(REPO / "tests"))
    from bundles import (
        build_bundle,
        bundle_metadata,
    )  # small valid bundles standing in for the one-class models

    baseline = build_bundle(
        tmp_path / "baseline.onnx",
        metadata=bundle_metadata(
            name="test baseline", training={"data": "4 real clips (gen_a 0.01 h); no augmentation"}
        ),
    )
    oneclass = build_bundle(tmp_path / "oneclass.onnx")
    manifest = build_protocol_corpus(tmp_path / "corpus", silent_source=True)
    bundles = {"baseline": str(baseline), "oneclass": str(oneclass)}
    cfg, sup = load_protocol_config(_config(tmp_path, manifest, oneclass_bundles=bundles))
    assert cfg.detectors() == ["baseline", "oneclass", "supervised", "fusion"]
    run = tmp_path / "run"
    report = ProtocolRunner(cfg, sup, run, progress=False).run()
    metrics = json.loads((run / "metrics.json").read_text())
    text = report.read_text()

    # the source with no usable speech is named and the run went on
    assert "source-silent" in metrics["failed"]
    assert "'silent' has no usable speech" in metrics["failed"]["source-silent"]
    for fold in ("family-formant", "family-vocoder", "source-gen_a", "source-gen_b"):
        assert (run / "folds" / fold / "scores.json").exists(), fold
    assert metrics["detectors"] == ["baseline", "oneclass", "supervised", "fusion"]
    for det in ("baseline", "oneclass", "supervised", "fusion"):
        for ch in ("wideband", "telephone"):
            m = metrics["pooled"][det][ch]
            assert 0.0 <= m["eer"] <= 1.0 and m["eer_ci"][0] <= m["eer"] <= m["eer_ci"][1]
            assert 0.0 <= metrics["folds"]["source-gen_b"][det][ch]["false_alarm"] <= 1.0
        assert f"{det}: leave one real source out" in text
    assert (run / "det-fusion.png").stat().st_size > 1000
    # the same graph with another provenance: the same window scores under another SHA-256; the baseline row
    # comes first in every table
    fam = json.loads((run / "folds" / "family-formant" / "scores.json").read_text())
    assert fam["clips"][0]["scores"]["baseline"] == fam["clips"][0]["scores"]["oneclass"]  # same graph
    assert fam["oneclass_bundles"]["baseline"]["sha256"] != fam["oneclass_bundles"]["oneclass"]["sha256"]
    summary = summary_markdown(run)
    lines = [ln for ln in summary.splitlines() if ln.startswith("| ") and "wideband" in ln]
    assert [ln.split(" | ")[0] for ln in lines[:4]] == [
        "| baseline",
        "| oneclass",
        "| supervised",
        "| fusion",
    ]
    # left out or not, per detector: the baseline trained on gen_a (from its provenance), nothing on gen_b
    trained = metrics["trained_on_held_out"]
    assert trained["baseline"] == {"gen_a": True, "gen_b": False}
    assert trained["supervised"] == {"gen_a": False, "gen_b": False}
    assert trained["oneclass"]["gen_a"] is None and trained["fusion"]["gen_a"] is None  # provenance "none"
    src_rows = [ln for ln in summary.splitlines() if ln.startswith("| baseline |")]
    assert all("†" in ln for ln in src_rows[2:])  # the source table: gen_a trained on
    assert "no (trained on it)" in text
    only = summary_markdown(run, ["fusion", "baseline"])
    first = [ln.split(" | ")[0] for ln in only.splitlines() if "wideband" in ln][:2]
    assert first == ["| fusion", "| baseline"]
    with pytest.raises(DataError, match=r"no detector \['nope'\]"):
        summary_markdown(run, ["nope"])

    # fused window scores are the fold's logistic formula on the two detectors' window scores
    fold = json.loads((run / "folds" / "family-vocoder" / "scores.json").read_text())
    w, b = fold["fusion"]["weights"], fold["fusion"]["bias"]
    for row in fold["clips"][:5]:
        s = row["scores"]
        expected = b + w[0] * np.asarray(s["oneclass"]) + w[1] * np.asarray(s["supervised"])
        np.testing.assert_allclose(s["fusion"], expected, rtol=1e-9)
    # the left-out family never trained the fold's model
    cfg_fold = yaml.safe_load((run / "folds" / "family-vocoder" / "supervised" / "config.yaml").read_text())
    assert cfg_fold["data"]["exclude_families"] == ["vocoder"]
    cfg_src = yaml.safe_load((run / "folds" / "source-gen_a" / "supervised" / "config.yaml").read_text())
    assert cfg_src["data"]["exclude_sources"] == ["gen_a"]

    # a rerun skips complete folds: nothing is retrained or rescored
    stamps = {p: p.stat().st_mtime_ns for p in run.glob("folds/*/*scores.json")}
    ProtocolRunner(cfg, sup, run, progress=False).run()  # (the failed fold is retried, and fails again)
    assert {p: p.stat().st_mtime_ns for p in run.glob("folds/*/*scores.json")} == stamps
    log = (run / "protocol.log").read_text()
    assert log.count("complete, skipped") >= 4

    # a new one-class bundle rescored without retraining: stage-1 files untouched, fusion refitted, and the
    # unchanged baseline row comes from its score cache (only the new bundle is scored)
    build_bundle(tmp_path / "oneclass2.onnx", metadata=bundle_metadata(name="another one-class model"))
    cfg.oneclass_bundles = {**bundles, "oneclass": str(tmp_path / "oneclass2.onnx")}
    stage1 = run / "folds" / "family-vocoder" / "supervised_scores.json"
    before = stage1.stat().st_mtime_ns
    (run / "protocol.log").write_text("")
    ProtocolRunner(cfg, sup, run, progress=False).run(only=["family-vocoder"])
    assert stage1.stat().st_mtime_ns == before
    fold = json.loads((run / "folds" / "family-vocoder" / "scores.json").read_text())
    assert fold["oneclass"]["path"].endswith("oneclass2.onnx") and fold["fusion_oneclass"] == "oneclass"
    log = (run / "protocol.log").read_text()
    assert "with the one-class row 'oneclass'" in log and "row 'baseline'" not in log

    # a row retrained per source fold: a bundle per left-out source (provenance without that source), the
    # embedded default in family folds; a source fold whose bundle is missing is scored without the row, and a
    # rerun adds it once it exists
    folds_dir = tmp_path / "oneclass-folds"
    folds_dir.mkdir()
    build_bundle(
        folds_dir / "gen_a.onnx",
        metadata=bundle_metadata(name="retrained without gen_a", training={"data": "x (gen_b 0.01 h)"}),
    )
    cfg.oneclass_bundles = {**bundles, "loso": str(folds_dir / "{source}.onnx")}
    src = ["source-gen_a", "source-gen_b", "family-vocoder"]
    ProtocolRunner(cfg, sup, run, progress=False).run(only=src)
    gen_a = json.loads((run / "folds" / "source-gen_a" / "scores.json").read_text())
    assert gen_a["oneclass_bundles"]["loso"]["path"] == str(folds_dir / "gen_a.onnx")
    gen_b = json.loads((run / "folds" / "source-gen_b" / "scores.json").read_text())
    assert "loso" not in gen_b["oneclass_bundles"] and "loso" not in gen_b["thresholds"]
    fam = json.loads((run / "folds" / "family-vocoder" / "scores.json").read_text())
    assert fam["oneclass_bundles"]["loso"]["path"] == str(default_bundle_path())
    build_bundle(
        folds_dir / "gen_b.onnx",
        metadata=bundle_metadata(name="retrained without gen_b", training={"data": "x (gen_a 0.01 h)"}),
    )
    (run / "protocol.log").write_text("")
    ProtocolRunner(cfg, sup, run, progress=False).run(only=src)
    log = (run / "protocol.log").read_text()
    assert "source-gen_a: complete, skipped" in log and "family-vocoder: complete, skipped" in log
    assert "source-gen_b: scoring" in log  # only the new fold bundle is scored
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["trained_on_held_out"]["loso"] == {"gen_a": False, "gen_b": False}
    assert metrics["folds"]["source-gen_b"]["loso"]["wideband"]["n_real"] > 0
    loso_rows = [ln for ln in summary_markdown(run, ["loso"]).splitlines() if ln.startswith("| loso |")]
    assert len(loso_rows) == 4 and not any("†" in ln for ln in loso_rows[2:])
    assert (
        "loso: leave one real source out (a one-class bundle retrained without each source)"
        in (run / "report.md").read_text()
    )


def test_single_bundle_key_still_works_and_bad_bundle_rows_are_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    cfg, _ = load_protocol_config(_config(tmp_path, manifest, oneclass_bundle="x.onnx"))
    assert cfg.bundles() == {"oneclass": "x.onnx"} and cfg.fusion_partner() == "oneclass"
    cfg, _ = load_protocol_config(_config(tmp_path, manifest, oneclass_bundle=""))
    assert cfg.detectors() == ["supervised"]
    cfg, _ = load_protocol_config(
        _config(tmp_path, manifest, oneclass_bundles={"base": "b.onnx", "emb": None})
    )
    assert cfg.fusion_partner() == "emb"  # the embedded default, when no row is called "oneclass"
    for over, msg in (
        ({"oneclass_bundles": {"fusion": "a.onnx"}}, "'fusion' is not a usable row name"),
        ({"oneclass_bundles": {"a": ""}}, "'a' needs a bundle path or null"),
        ({"oneclass_bundles": {"a": None}, "oneclass_bundle": "b.onnx"}, "not both"),
        ({"oneclass_bundles": {"a": None}, "fusion_oneclass": "b"}, "fusion_oneclass 'b' is not one of"),
        ({"oneclass_bundles": {"a": "f/{fold}.onnx"}}, r"the only placeholder .* is \{source\}"),
    ):
        with pytest.raises(ConfigError, match=msg):
            load_protocol_config(_config(tmp_path, manifest, **over))


def test_a_missing_bundle_is_named_before_any_training(tmp_path: Path, capsys) -> None:
    manifest = build_protocol_corpus(tmp_path / "c", clips_per_speaker=1, spoof_clips=1)
    cfg = _config(tmp_path, manifest, oneclass_bundles={"baseline": None, "oneclass": None})
    run = tmp_path / "run"
    missing = str(tmp_path / "missing.onnx")
    assert main(["run", "--config", str(cfg), "--run-dir", str(run), "--oneclass-bundle", missing]) == 2
    err = capsys.readouterr().err
    assert f"one-class row 'oneclass': bundle {missing}" in err
    assert not (run / "folds").exists()


def test_fold_names_must_exist(tmp_path: Path) -> None:
    manifest = build_protocol_corpus(tmp_path / "c", clips_per_speaker=1, spoof_clips=1)
    cfg, sup = load_protocol_config(_config(tmp_path, manifest, source_folds=["gen_z"]))
    with pytest.raises(DataError, match="source fold 'gen_z': no real clip of that source"):
        ProtocolRunner(cfg, sup, tmp_path / "run", progress=False).run()


def test_trained_sources_from_bundle_provenance() -> None:
    data = "12260 real clips of split 'train' from m.csv (asterisk 5.73 h, fillets_cs 2.36 h); augmentation"
    assert trained_sources({"data": data}) == ["asterisk", "fillets_cs"]
    assert trained_sources({"data": "none"}) is None and trained_sources(None) is None


def test_a_templated_row_names_one_bundle_per_source_fold() -> None:
    tpl = "runs/f/{source}.onnx"
    assert fold_bundle(tpl, "source", "hedgewars") == "runs/f/hedgewars.onnx"
    assert fold_bundle(tpl, "family", "vocoder") is None  # the embedded default
    assert fold_bundle("b.onnx", "source", "x") == "b.onnx" and fold_bundle(None, "source", "x") is None


def test_oneclass_folds_driver_chains_train_refit_export_and_resumes(tmp_path: Path) -> None:
    """The driver's fold configs and its resume rules, with the three commands faked (no training)."""
    from training.protocol.oneclass_folds import fold_config, make_folds

    base = yaml.safe_load((REPO / "training/oneclass/configs/default.yaml").read_text())
    cfg = fold_config(base, "hedgewars", "p")
    assert cfg["name"] == "p-hedgewars" and cfg["data"]["exclude_sources"] == ["hedgewars"]
    assert cfg["train"] == base["train"] and cfg["augment"] == base["augment"]  # the shipped step budget
    assert "exclude_sources" not in base["data"]  # the base is not modified

    calls: list[tuple[str, str]] = []

    def fake(cmd: list[str], log: Path) -> int:
        step = "export" if "export" in cmd else "refit" if "training.oneclass.refit" in cmd else "train"
        source = log.parent.name
        calls.append((source, step))
        if source == "bad" and step == "refit":
            return 3
        if step == "export":
            Path(cmd[cmd.index("--out") + 1]).write_bytes(b"bundle")
            assert cmd[cmd.index("--name") + 1] == f"p-{source}"
        if step == "refit":
            assert cmd[cmd.index("--set") + 1] == "pooling=mean"
        return 0

    out = tmp_path / "folds"
    said: list[str] = []
    status = make_folds(out, ["a", "bad", "b"], prefix="p", run=fake, say=said.append)
    assert status["a"] == "done" and status["b"] == "done" and "refit exited with status 3" in status["bad"]
    assert calls == [("a", s) for s in ("train", "refit", "export")] + [
        ("bad", "train"),
        ("bad", "refit"),
    ] + [("b", s) for s in ("train", "refit", "export")]
    assert (out / "a.onnx").exists() and not (out / "bad.onnx").exists()
    written = yaml.safe_load((out / "a" / "fold.yaml").read_text())
    assert written["data"]["exclude_sources"] == ["a"]
    # a rerun skips the finished folds and retries the failed one
    calls.clear()
    status = make_folds(out, ["a", "bad", "b"], prefix="p", run=fake, say=said.append)
    assert status["a"] == status["b"] == "skipped" and calls == [("bad", "train"), ("bad", "refit")]
