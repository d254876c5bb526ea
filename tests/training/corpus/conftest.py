"""Fixtures for the corpus tests: speech made at test time (never committed) and fake unpacked packages."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # training/ is a source folder, not an installed package
    sys.path.insert(0, str(ROOT))

from training.audio_io import read_audio, resample  # noqa: E402

SENTENCES = [
    "Please enter your account number followed by the pound key.",
    "The person at extension one two three four is not available.",
    "Your call is important to us, please stay on the line.",
    "To leave a message, press one now, or hang up.",
    "The conference will begin when the leader arrives.",
    "Thank you for calling, goodbye and have a nice day.",
]


def tts(text: str, voice: str = "en-us") -> tuple[np.ndarray, int]:
    """Speech made with espeak-ng at test time (the corpus tests need audio a voice detector accepts)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    proc = subprocess.run(["espeak-ng", "-v", voice, "--stdout", "--", text], capture_output=True, check=True)
    tmp = Path(subprocess.check_output(["mktemp", "--suffix=.wav"]).decode().strip())
    try:
        tmp.write_bytes(proc.stdout)
        return read_audio(tmp)
    finally:
        tmp.unlink(missing_ok=True)


def write_g722(path: Path, x: np.ndarray, sr: int) -> None:
    """Write headerless G.722 like the Asterisk packages ship (via PyAV's encoder)."""
    import av

    y = resample(x, sr, 16000)
    enc = av.CodecContext.create("g722", "w")
    enc.sample_rate, enc.layout, enc.format = 16000, "mono", "s16"
    enc.open()
    pcm = (np.clip(y, -1, 0.99997) * 32768).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
    frame.sample_rate, frame.pts = 16000, 0
    data = b"".join(bytes(p) for p in [*enc.encode(frame), *enc.encode(None)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def make_fake_packages(cache: Path) -> dict[str, list[str]]:
    """Unpacked trees for the tiny profile's packages, with speech made by espeak-ng, plus bad files.

    Returns the names of the bad files planted per package so tests can look for them in the skip report.
    """
    root = cache / "unpacked"
    bad: dict[str, list[str]] = {}
    for lang, voice, folder in (("en", "en-us", "en_US_f_Allison"), ("ru", "ru", "ru_RU_f_IvrvoiceRU")):
        doc = root / f"asterisk-core-sounds-{lang}" / f"usr/share/doc/asterisk-core-sounds-{lang}"
        doc.mkdir(parents=True)
        lines = [f"; Core Asterisk Sounds ({lang})", ""]
        lines += [f"prompt-{i}: {s}" for i, s in enumerate(SENTENCES)]
        (doc / f"core-sounds-{lang}.txt.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
        base = root / f"asterisk-core-sounds-{lang}-g722" / "usr/share/asterisk/sounds" / folder
        for i, s in enumerate(SENTENCES[:4]):
            x, sr = tts(s, voice)
            write_g722(base / f"prompt-{i}.g722", x, sr)
        write_g722(base / "silence" / "1.g722", np.zeros(16000, np.float32), 16000)  # must be ignored
        x, sr = tts("a", voice)
        write_g722(base / "letters" / "a.g722", x[: int(0.3 * sr)], sr)  # too short after trimming
        bad[f"asterisk-core-sounds-{lang}-g722"] = ["letters/a.g722"]
    cs = root / "fillets-ng-data-cs" / "usr/share/games/fillets-ng/sound"
    speakers = ["m", "v", "hs", "b1", "c", "b2"]
    for i, spk in enumerate(speakers):
        for j in range(2):
            x, sr = tts(SENTENCES[(i + j) % len(SENTENCES)], "cs")
            path = cs / f"level{i}" / "cs" / f"lv{i}-{spk}-line{j}.ogg"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), x, sr, format="OGG", subtype="VORBIS")
    (cs / "level0/cs/lv0-m-empty.ogg").write_bytes(b"")
    (cs / "level0/cs/lv0-m-garbage.ogg").write_bytes(b"OggS this is not really a vorbis stream" * 10)
    rng = np.random.default_rng(0)
    hum = 0.3 * np.sin(2 * np.pi * 50 * np.arange(22050 * 2) / 22050) + 0.01 * rng.standard_normal(44100)
    sf.write(
        str(cs / "level1/cs/lv1-v-hum.ogg"), hum.astype(np.float32), 22050, format="OGG", subtype="VORBIS"
    )
    bad["fillets-ng-data-cs"] = ["lv0-m-empty.ogg", "lv0-m-garbage.ogg", "lv1-v-hum.ogg"]
    return bad


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    cache = tmp_path_factory.mktemp("sg-cache")
    bad = make_fake_packages(cache)
    return cache, bad
