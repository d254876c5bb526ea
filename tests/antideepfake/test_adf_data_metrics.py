"""Manifests (both formats), duration batching, and the EER/AUC metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.antideepfake.data import BatchPlan, ManifestError, duration_batches, read_manifest
from training.antideepfake.metrics import auc, eer, table_row


def test_antideepfake_protocol_csv(tmp_path: Path) -> None:
    csv = tmp_path / "protocol.csv"
    csv.write_text(
        "ID,Label,Duration,SampleRate,Path,Attack,Speaker,Proportion,AudioChannel,AudioEncoding,"
        "AudioBitSample,Language\n"
        "ASV19LAdemo-LA_E_7583177,fake,2.22,16000,$ROOT//eval/LA_E_7583177.wav,A10,LA_0045,test,1,PCM_S,16,EN\n"
        "ITW-12,real,3.5,16000,$ROOT/itw/12.wav,-,Alec,test,1,PCM_S,16,EN\n"
    )
    items = read_manifest(csv, data_root=tmp_path / "Data")
    assert [u.label for u in items] == [0, 1]
    assert [u.subset for u in items] == ["ASV19LAdemo", "ITW"]
    assert items[0].system == "A10" and items[0].split == "eval" and items[0].duration == pytest.approx(2.22)
    assert str(items[0].path).startswith(str(tmp_path / "Data"))


def test_corpus_manifest_and_splits(tiny_corpus: Path) -> None:
    train = read_manifest(tiny_corpus, split="train")
    dev = read_manifest(tiny_corpus, split="valid")  # synonym of dev
    assert len(train) == 16 and len(dev) == 8
    assert {u.system for u in train if u.label == 0} == {"buzz-a", "buzz-b"}
    assert all(u.path.is_file() for u in train)


def test_manifest_errors_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\na.wav,maybe\n")
    with pytest.raises(ManifestError, match=r"bad.csv:2: label 'maybe'"):
        read_manifest(bad)
    odd = tmp_path / "odd.csv"
    odd.write_text("file,speaker\n")
    with pytest.raises(ManifestError, match="unknown manifest header"):
        read_manifest(odd)
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "none.csv")


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(min_value=0.3, max_value=40.0), min_size=1, max_size=80),
    st.floats(min_value=5.0, max_value=60.0),
)
def test_duration_batches_partition_and_respect_budget(durations: list[float], budget: float) -> None:
    plan = BatchPlan(max_batch_seconds=budget, crop_min_s=10.0, crop_max_s=13.0, max_batch_size=16)
    batches = duration_batches(durations, plan, rng=np.random.default_rng(0))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(durations)))
    for b in batches:
        assert len(b) <= 16
        cost = max(plan.effective_duration(durations[i]) for i in b) * len(b)
        assert len(b) == 1 or cost <= budget + 1e-9


def test_eer_and_auc_known_cases() -> None:
    assert eer([2, 3, 4], [0, 1, -1])[0] == 0.0
    assert auc([2, 3, 4], [0, 1, -1]) == 1.0
    assert eer([0, 1, -1], [2, 3, 4])[0] == 1.0
    # one fake below one real out of 4 + 4: EER 25 %
    e, _ = eer([5, 6, 7, 0.5], [1, 2, 3, 0])
    assert e == pytest.approx(0.25)
    assert auc([1.0, 1.0], [1.0, 1.0]) == 0.5
    assert np.isnan(eer([], [1.0])[0])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-5, 5), min_size=1, max_size=30),
    st.lists(st.floats(-5, 5), min_size=1, max_size=30),
)
def test_auc_matches_pairwise_definition(fake: list[float], real: list[float]) -> None:
    pairs = [(1.0 if f > r else 0.5 if f == r else 0.0) for f in fake for r in real]
    assert auc(fake, real) == pytest.approx(float(np.mean(pairs)))


def test_table_row_error_rates_at_threshold() -> None:
    scores = np.array([2.0, -1.0, 0.5, -3.0])
    labels = np.array([0, 0, 1, 1])  # 1 = real
    row = table_row("x", scores, labels, threshold=0.0)
    assert row.miss_at_threshold == 0.5  # the fake at -1.0 passes as real
    assert row.false_alarm_at_threshold == 0.5  # the real at 0.5 is flagged


def test_both_eer_definitions_agree_on_clean_cases() -> None:
    scores = np.array([5, 6, 7, 0.5, 1, 2, 3, 0], dtype=float)
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    row = table_row("x", scores, labels, threshold=0.0)
    assert row.eer == pytest.approx(0.25)
    assert row.eer_interpolated == pytest.approx(0.25)
