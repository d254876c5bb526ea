"""training.audio_io: reading with clear errors, shortcut removal, G.711 and codec round trips."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.audio_io import (
    AudioReadError,
    active_rms_dbfs,
    add_dither,
    alaw_decode,
    alaw_encode,
    codec_roundtrip,
    ffmpeg_roundtrip,
    g711_roundtrip,
    g722_roundtrip,
    mulaw_decode,
    mulaw_encode,
    normalize_level,
    pyav_available,
    read_audio,
    read_raw_pcm16,
    trim_silence,
    write_audio_atomic,
)

SR = 16000


def tone(freq: float = 440.0, seconds: float = 1.0, amp: float = 0.3, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioReadError, match="nope.wav: no such file"):
        read_audio(missing)
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    with pytest.raises(AudioReadError, match="empty.flac: empty file"):
        read_audio(empty)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF" + bytes(range(256)) * 4)
    with pytest.raises(AudioReadError, match="garbage.wav"):
        read_audio(garbage)
    nan = tmp_path / "nan.wav"
    x = tone()
    x[100] = np.nan
    sf.write(str(nan), x, SR, subtype="FLOAT")
    with pytest.raises(AudioReadError, match="nan.wav: contains NaN"):
        read_audio(nan)


def test_read_resamples_and_mixes_to_mono(tmp_path: Path) -> None:
    path = tmp_path / "stereo44.wav"
    x = tone(sr=44100)
    sf.write(str(path), np.stack([x, x], axis=1), 44100)
    y, sr = read_audio(path, sample_rate=SR)
    assert sr == SR and y.ndim == 1 and abs(y.shape[0] - SR) <= 1
    assert abs(np.max(np.abs(y)) - 0.3) < 0.01


def test_raw_pcm16(tmp_path: Path) -> None:
    path = tmp_path / "x.raw"
    pcm = (tone(sr=8000) * 32768).astype("<i2")
    path.write_bytes(pcm.tobytes())
    y, sr = read_raw_pcm16(path, 8000)
    assert sr == 8000
    np.testing.assert_allclose(y, pcm / 32768.0, atol=1e-7)


def test_trim_removes_padded_digital_silence_but_keeps_inner_pauses() -> None:
    speech = np.concatenate([tone(seconds=0.5), np.zeros(SR // 4, np.float32), tone(seconds=0.5)])
    padded = np.concatenate([np.zeros(SR, np.float32), speech, np.zeros(2 * SR, np.float32)])
    out = trim_silence(padded, SR)
    # first..last active frame plus a 50 ms margin each side; the inner 250 ms pause stays
    assert speech.shape[0] <= out.shape[0] <= speech.shape[0] + int(0.12 * SR)
    assert trim_silence(np.zeros(SR, np.float32), SR).shape[0] == 0


def test_level_normalisation_targets_active_speech_and_limits_peaks() -> None:
    quiet = tone(amp=0.01)
    y = normalize_level(quiet, SR)
    assert active_rms_dbfs(y, SR) == pytest.approx(-26.0, abs=0.1)
    # pauses do not change the level the clip is brought to
    with_pause = np.concatenate([quiet, np.zeros(2 * SR, np.float32)])
    assert active_rms_dbfs(normalize_level(with_pause, SR), SR) == pytest.approx(-26.0, abs=0.1)
    # a very peaky clip is scaled down so the peak stays at -1 dBFS
    spiky = tone(amp=0.01)
    spiky[SR // 2] = 0.9
    z = normalize_level(spiky, SR)
    assert np.max(np.abs(z)) <= 10 ** (-1 / 20) + 1e-6


def test_dither_leaves_no_digital_zeros_after_16_bit_storage(tmp_path: Path) -> None:
    x = np.concatenate([tone(), np.zeros(SR, np.float32)])
    path = tmp_path / "d.flac"
    write_audio_atomic(path, add_dither(x, np.random.default_rng(0)), SR)
    y, _ = sf.read(str(path), dtype="float32")
    zero = np.flatnonzero(y == 0.0)
    runs = np.split(zero, np.flatnonzero(np.diff(zero) != 1) + 1)
    assert max(len(r) for r in runs) < 8
    assert 20 * np.log10(np.std(y[-SR:])) == pytest.approx(-87, abs=2)
    assert not list(tmp_path.glob(".tmp-*"))  # atomic write left nothing behind


def test_g711_reference_values_and_accuracy() -> None:
    # ITU-T G.711: zero encodes to 0xFF (mu-law) and 0xD5 (A-law); full scale to 0x80 / 0xAA
    assert mulaw_encode(np.array([0.0]))[0] == 0xFF
    assert mulaw_encode(np.array([1.0]))[0] == 0x80
    assert alaw_encode(np.array([0.0]))[0] == 0xD5
    assert alaw_encode(np.array([1.0]))[0] == 0xAA
    codes = np.arange(256, dtype=np.uint8)
    assert np.array_equal(alaw_encode(alaw_decode(codes)), codes)
    mu = mulaw_encode(mulaw_decode(codes))
    assert np.array_equal(mu[codes != 0x7F], codes[codes != 0x7F])  # 0x7F is -0, re-encoded as +0 (0xFF)
    x = np.linspace(-0.9, 0.9, 4001)
    for enc, dec in ((mulaw_encode, mulaw_decode), (alaw_encode, alaw_decode)):
        err = np.abs(dec(enc(x)) - x)
        # companding: <4 % relative error, at most half of the smallest step (A-law: 16 LSB) near zero
        assert np.all(err <= np.maximum(np.abs(x) * 0.04, 8.5 / 32768))


def test_g711_roundtrip_is_telephone_band() -> None:
    x = tone(1000) + tone(6000)
    y = g711_roundtrip(x, SR, "mulaw")
    spec = np.abs(np.fft.rfft(y))
    f = np.fft.rfftfreq(y.shape[0], 1 / SR)
    assert spec[np.argmin(np.abs(f - 6000))] < 1e-3 * spec[np.argmin(np.abs(f - 1000))]
    with pytest.raises(ValueError, match="law"):
        g711_roundtrip(x, SR, "ulaw")


@pytest.mark.skipif(shutil.which("ffmpeg") is None or not pyav_available(), reason="needs ffmpeg and PyAV")
def test_in_process_g722_matches_the_ffmpeg_command() -> None:
    x = (np.random.default_rng(1).standard_normal(SR) * 0.1).astype(np.float32)
    a = g722_roundtrip(x, SR)
    b = ffmpeg_roundtrip(x, SR, "g722", container="g722")
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape


@pytest.mark.skipif(not pyav_available(), reason="needs PyAV")
@pytest.mark.parametrize(
    ("codec", "rate", "bitrate"), [("libopus", 16000, 16000), ("libopencore_amrnb", 8000, 12200)]
)
def test_codecs_keep_length_and_alignment(codec: str, rate: int, bitrate: int) -> None:
    from scipy import signal

    # low-passed noise: aperiodic, so the cross-correlation peak is unambiguous
    noise = np.random.default_rng(0).standard_normal(SR)
    x = (0.1 * signal.sosfilt(signal.butter(6, 2500, fs=SR, output="sos"), noise)).astype(np.float32)
    y = codec_roundtrip(x, SR, codec, codec_rate=rate, bitrate=bitrate)
    assert y.shape == x.shape
    lags = np.arange(-200, 201)
    corr = [np.dot(x[2000:14000], np.roll(y, -lag)[2000:14000]) for lag in lags]
    assert abs(int(lags[int(np.argmax(corr))])) <= 4  # the codec's own delay is compensated


def test_prepare_removes_silence_padding_and_level_shortcuts() -> None:
    """The same recording padded with digital silence, 12 dB quieter, or at another rate is stored (nearly)
    the same way: none of these can tell a clip's origin after the corpus' shortcut removal."""
    from scipy import signal

    from training.corpus.build import ProcessConfig, prepare

    cfg = ProcessConfig(use_vad=False)
    rng = np.random.default_rng(0)
    env = np.repeat(rng.uniform(0.2, 1.0, 12), SR // 8)
    x = 0.2 * env * signal.sosfilt(signal.butter(4, 3000, fs=SR, output="sos"), rng.standard_normal(env.size))
    x = x.astype(np.float32)
    ref = prepare(x, SR, cfg, "ref")
    padded = prepare(
        np.concatenate([np.zeros(SR, np.float32), x, np.zeros(SR // 2, np.float32)]), SR, cfg, "pad"
    )
    quiet = prepare(x * np.float32(10 ** (-12 / 20)), SR, cfg, "quiet")
    x44 = signal.resample_poly(x, 441, 160).astype(np.float32)
    other_rate = prepare(x44, 44100, cfg, "44k")
    # at most the 50 ms trim margin is kept on each side of the padded copy (then dithered when stored)
    assert 0 <= padded.shape[0] - ref.shape[0] <= int(0.12 * SR)
    np.testing.assert_allclose(quiet, ref, atol=1e-5)
    for y in (padded, quiet, other_rate):
        assert active_rms_dbfs(y, SR) == pytest.approx(active_rms_dbfs(ref, SR), abs=0.2)
    with pytest.raises(ValueError, match="short: too short after trimming"):
        prepare(x[: SR // 2], SR, cfg, "short")
