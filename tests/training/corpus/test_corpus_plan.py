"""Split rules, job planning (speaker-disjoint, resyntheses only from held-out clips), manifest I/O and
packages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from training.corpus import debs
from training.corpus.build import PROFILES, plan_jobs, plan_resyntheses
from training.corpus.manifest import ManifestError, ManifestRow, read_manifest, write_manifest
from training.corpus.sources import SourceClip, fillets_speaker
from training.corpus.splits import SPOOF_SPLIT, hashed_speaker_splits, real_split


def test_fillets_speaker_is_the_second_field() -> None:
    assert fillets_speaker("vit-hs-klid1") == "hs"
    assert fillets_speaker("dr-1-bojovnik") == "1"
    assert fillets_speaker("m-obdivovat") == "m"


def test_hashed_speaker_splits_are_deterministic_disjoint_and_cover_dev_eval() -> None:
    speakers = [f"klettres-{i}" for i in range(20)]
    a = hashed_speaker_splits(speakers)
    assert a == hashed_speaker_splits(list(reversed(speakers)))
    counts = {s: list(a.values()).count(s) for s in ("train", "dev", "eval")}
    assert counts == {"train": 14, "dev": 3, "eval": 3}
    small = hashed_speaker_splits(["a", "b", "c"])
    assert sorted(small.values()) == ["dev", "eval", "train"]
    assert set(hashed_speaker_splits(["a", "b"]).values()) == {"train"}


def test_real_split_rules() -> None:
    assert real_split("asterisk", "asterisk-IvrvoiceRU", "ru", {}) == "eval"
    assert real_split("asterisk", "asterisk-Allison", "es", {}) == "train"
    assert real_split("fillets_cs", "fillets_cs-m", "cs", {}) == "train"
    assert real_split("fillets_cs", "fillets_cs-hs", "cs", {}) == "dev"
    assert real_split("fillets_cs", "fillets_cs-b2", "cs", {}) == "eval"
    assert real_split("klettres", "klettres-de", "de", {"klettres-de": "dev"}) == "dev"


def _clip(source: str, speaker: str, i: int, lang: str = "en") -> SourceClip:
    return SourceClip(
        clip_id=f"{source}-{speaker}-{i}", path=Path(f"/nowhere/{source}/{speaker}/{i}.ogg"), source=source,
        speaker=speaker, language=lang, licence="test", package="pkg",
    )  # fmt: skip


def test_plan_keeps_speakers_in_one_split_and_resynthesises_only_held_out_clips() -> None:
    clips = [_clip("klettres", f"klettres-{s}", i) for s in "abcdefghij" for i in range(5)]
    clips += [_clip("asterisk", "asterisk-IvrvoiceRU", i, "ru") for i in range(5)]
    clips += [_clip("asterisk", "asterisk-Allison", i) for i in range(5)]
    texts = {"en": {f"p{i}": f"please say something number {i} now" for i in range(50)}}
    jobs = plan_jobs(PROFILES["full"], clips, texts)
    assert not [j for j in jobs if j.kind == "resynth"]  # planned once the real clips are built
    real_ids = [j.clip_id for j in jobs if j.kind == "real"]
    unusable = set(real_ids[::2])
    second = plan_resyntheses(PROFILES["full"], jobs, set(real_ids) - unusable)
    assert second and not any(j.parent in unusable for j in second)
    jobs += second
    splits_of: dict[str, set[str]] = {}
    for j in jobs:
        if j.label == "bonafide":
            splits_of.setdefault(j.speaker, set()).add(j.split)
    assert all(len(v) == 1 for v in splits_of.values())
    real = {j.clip_id: j for j in jobs if j.kind == "real"}
    resynth = [j for j in jobs if j.kind == "resynth"]
    assert resynth, "no resyntheses planned"
    for j in resynth:
        parent = real[j.parent]
        assert parent.split != "train"
        assert parent.split == {"world": "dev", "griffinlim": "eval"}[j.system]
        assert j.split == SPOOF_SPLIT[j.system]
    tts = [j for j in jobs if j.kind == "tts"]
    assert {j.language for j in tts} == {"en"}  # only languages with texts get voices
    assert all(j.text and j.split == SPOOF_SPLIT[j.system] for j in tts)
    assert len({j.clip_id for j in jobs}) == len(jobs)


def _row(**kw: object) -> ManifestRow:
    base = dict(
        path="/a.flac", label="bonafide", system="bonafide", family="none", source="asterisk", speaker="s",
        language="en", band="wideband", channel="wideband", split="train", duration=1.5, licence="x",
    )  # fmt: skip
    base.update(kw)
    return ManifestRow(**base)  # type: ignore[arg-type]


def test_manifest_roundtrip_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    rows = [_row(), _row(label="spoof", system="espeak", family="formant", split="dev", text='say "hi", ok')]
    assert write_manifest(path, rows) == 2
    assert read_manifest(path) == rows
    write_manifest(path, [_row(split="test")])
    with pytest.raises(ManifestError, match=r"m.csv:2: .*split must be one of"):
        read_manifest(path)
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "missing.csv")


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb to make a test package")
def test_debs_dir_is_used_and_unpack_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "pkgtree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: sg-test-data\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: t <t@example.org>\nDescription: t\n"
    )
    (tree / "usr/share/sg").mkdir(parents=True)
    (tree / "usr/share/sg/hello.txt").write_text("hello")
    debs_dir = tmp_path / "debs"
    debs_dir.mkdir()
    subprocess.run(["dpkg-deb", "-b", str(tree), str(debs_dir / "sg-test-data_1.0_all.deb")], check=True,
                   capture_output=True)  # fmt: skip
    cache = tmp_path / "cache"
    roots = debs.ensure_packages(["sg-test-data"], cache, debs_dir)
    assert (roots["sg-test-data"] / "usr/share/sg/hello.txt").read_text() == "hello"
    assert not list((cache / "unpacked").glob("*.partial"))
    # the pure-Python extractor (for machines without dpkg) gives the same tree
    out = tmp_path / "py"
    debs._extract_with_python(debs_dir / "sg-test-data_1.0_all.deb", out)
    assert (out / "usr/share/sg/hello.txt").read_text() == "hello"
    # no .deb anywhere and no apt-get: a clear message naming the package and --debs
    monkeypatch.setattr(debs.shutil, "which", lambda name: None)
    with pytest.raises(debs.PackageError, match=r"apt-get is not available.*sg-other.*--debs"):
        debs.ensure_packages(["sg-other"], cache, None)
    with pytest.raises(debs.PackageError, match="not a Debian package"):
        bogus = tmp_path / "bogus.deb"
        bogus.write_bytes(b"nope")
        debs._extract_with_python(bogus, tmp_path / "x")
