"""Readers for ASVspoof 2019 LA, In-the-Wild and AntiDeepfake protocols, on small generated protocol files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.corpus.readers import (
    ProtocolError,
    read_antideepfake_csv,
    read_asvspoof2019_la,
    read_in_the_wild,
)


def _wav(path: Path, seconds: float, sr: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.sin(2 * np.pi * 200 * np.arange(int(seconds * sr)) / sr)
    sf.write(str(path), x.astype(np.float32), sr, format="FLAC" if path.suffix == ".flac" else "WAV")


def test_asvspoof2019_la(tmp_path: Path) -> None:
    la = tmp_path / "LA"
    proto = la / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.dev.trl.txt"
    proto.parent.mkdir(parents=True)
    proto.write_text(
        "LA_0069 LA_D_1047731 - - bonafide\nLA_0070 LA_D_2000001 - A04 spoof\n\n"
        "LA_0071 LA_D_3000001 - A01 spoof\n"
    )
    _wav(la / "ASVspoof2019_LA_dev/flac/LA_D_1047731.flac", 1.25)
    _wav(la / "ASVspoof2019_LA_dev/flac/LA_D_2000001.flac", 2.0)
    rows, problems = read_asvspoof2019_la(proto)
    assert [(r.label, r.system, r.family, r.split) for r in rows] == [
        ("bonafide", "bonafide", "none", "dev"),
        ("spoof", "A04", "concatenative", "dev"),
    ]
    assert rows[0].duration == pytest.approx(1.25)
    assert rows[0].speaker == "asvspoof2019-LA_0069" and rows[0].channel == "original"
    assert len(problems) == 1 and "LA_D_3000001.flac" in problems[0] and "line 4" in problems[0]
    bad = tmp_path / "ASVspoof2019.LA.cm.train.trn.txt"
    bad.write_text("LA_0069 LA_T_1 - bonafide\n")
    with pytest.raises(ProtocolError, match=r"train.trn.txt:1: expected 5 columns"):
        read_asvspoof2019_la(bad, audio_dir=tmp_path)
    with pytest.raises(ProtocolError, match="cannot tell the split"):
        other = tmp_path / "protocol.txt"
        other.write_text("")
        read_asvspoof2019_la(other)


def test_in_the_wild(tmp_path: Path) -> None:
    root = tmp_path / "release_in_the_wild"
    root.mkdir()
    (root / "meta.csv").write_text(
        "file,speaker,label\n0.wav,Alec Guinness,spoof\n1.wav,Barack Obama,bona-fide\n"
    )
    _wav(root / "0.wav", 1.0)
    _wav(root / "1.wav", 0.5, sr=8000)
    rows, problems = read_in_the_wild(root / "meta.csv")
    assert not problems
    assert [(r.label, r.system, r.speaker, r.band, r.split) for r in rows] == [
        ("spoof", "unknown", "itw-Alec Guinness", "wideband", "eval"),
        ("bonafide", "bonafide", "itw-Barack Obama", "narrowband", "eval"),
    ]
    (root / "meta.csv").write_text("file,speaker,label\n0.wav,A,fake\n")
    with pytest.raises(ProtocolError, match=r"meta.csv:2: label must be spoof or bona-fide"):
        read_in_the_wild(root / "meta.csv")


def test_antideepfake_csv(tmp_path: Path) -> None:
    header = (
        "ID,Label,Duration,SampleRate,Path,Attack,Speaker,Proportion,AudioChannel,AudioEncoding,AudioBitSample,"
        "Language"
    )
    lines = [
        header,
        "ASV19LAdemo-LA_E_7583177,fake,2.22,16000,$ROOT//toy/eval/LA_E_7583177.wav,A10,LA_0045,test,1,PCM_S,16,EN",
        "LibriTTS-1234,real,3.5,24000,$ROOT/libri/1234.wav,-,1234,train,1,PCM_S,16,EN",
        "VoxCeleb2-9,real,4.0,16000,$ROOT/vox/9.wav,-,id9,valid,1,PCM_S,16,EN",
    ]
    proto = tmp_path / "protocol.csv"
    proto.write_text("\n".join(lines) + "\n")
    rows, problems = read_antideepfake_csv(proto, data_folder=tmp_path / "Data")
    assert not problems
    assert [(r.label, r.system, r.source, r.split, r.language) for r in rows] == [
        ("spoof", "A10", "ASV19LAdemo", "eval", "en"),
        ("bonafide", "bonafide", "LibriTTS", "train", "en"),
        ("bonafide", "bonafide", "VoxCeleb2", "dev", "en"),
    ]
    assert rows[0].path == str(tmp_path / "Data" / "toy/eval/LA_E_7583177.wav")
    assert rows[1].duration == pytest.approx(3.5)
    # probing finds the missing audio and names it
    _wav(tmp_path / "Data" / "libri/1234.wav", 0.75)
    rows, problems = read_antideepfake_csv(proto, data_folder=tmp_path / "Data", probe=True)
    assert [r.clip_id for r in rows] == ["LibriTTS-1234"] and rows[0].duration == pytest.approx(0.75)
    assert len(problems) == 2 and "LA_E_7583177.wav" in problems[0]
    proto.write_text(header + "\nX-1,maybe,1,16000,a.wav,-,s,test,1,PCM_S,16,EN\n")
    with pytest.raises(ProtocolError, match=r"protocol.csv:2: Label must be real or fake"):
        read_antideepfake_csv(proto)
    proto.write_text("ID,Path\nX-1,a.wav\n")
    with pytest.raises(ProtocolError, match=r"missing columns \['Label'\]"):
        read_antideepfake_csv(proto)
