"""Decoding and encoding of every supported sample format, including exact G.711."""

from __future__ import annotations

import numpy as np
import pytest

from stream_guard.core.formats import AudioFormat, AudioFormatError, Decoder, decode, encode

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


def test_g711_known_codes() -> None:
    # ITU-T G.711 reference points: mu-law 0xFF/0x7F are the two zeros, 0x80/0x00 the extremes (+-32124);
    # A-law 0xD5/0x55 are +-8, 0xAA/0x2A the extremes (+-32256).
    mu = decode(bytes([0xFF, 0x7F, 0x80, 0x00]), AudioFormat(8000, "mulaw"))[:, 0] * 32768
    assert mu.tolist() == [0, 0, 32124, -32124]
    al = decode(bytes([0xD5, 0x55, 0xAA, 0x2A]), AudioFormat(8000, "alaw"))[:, 0] * 32768
    assert al.tolist() == [8, -8, 32256, -32256]


@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
def test_g711_matches_audioop_on_every_value(encoding: str) -> None:
    audioop = pytest.importorskip("audioop")  # still in the standard library before Python 3.13
    fmt = AudioFormat(8000, encoding)
    ours = encode(ALL_INT16.astype(np.float32) / 32768.0, fmt)
    theirs = (
        audioop.lin2ulaw(ALL_INT16.tobytes(), 2)
        if encoding == "mulaw"
        else audioop.lin2alaw(ALL_INT16.tobytes(), 2)
    )
    assert ours == theirs
    codes = bytes(range(256))
    ref = audioop.ulaw2lin(codes, 2) if encoding == "mulaw" else audioop.alaw2lin(codes, 2)
    got = np.rint(decode(codes, fmt)[:, 0] * 32768).astype("<i2").tobytes()
    assert got == ref


@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
def test_g711_decode_encode_is_identity_on_codes(encoding: str) -> None:
    fmt = AudioFormat(8000, encoding)
    codes = bytes(range(256))
    again = encode(decode(codes, fmt), fmt)
    # the two zero codes of mu-law both decode to 0 and re-encode to 0xFF
    diff = [c for c, d in zip(codes, again, strict=True) if c != d]
    assert diff in ([], [0x7F])


def test_pcm16_round_trip_exact() -> None:
    fmt = AudioFormat(16000, "pcm16")
    raw = ALL_INT16.tobytes()
    assert encode(decode(raw, fmt), fmt) == raw
    assert decode(ALL_INT16, fmt).tolist() == decode(raw, fmt).tolist()


def test_float32_and_interleaved_channels() -> None:
    fmt = AudioFormat(48000, "f32le", channels=2)
    assert fmt.encoding == "float32"
    x = np.array([[0.1, -0.2], [0.3, -0.4], [0.5, -0.6]], np.float32)
    assert np.array_equal(decode(encode(x, fmt), fmt), x)
    assert np.array_equal(decode(x.reshape(-1), fmt), x)  # 1-D arrays are interleaved frames


def test_decoder_carries_partial_frames_across_chunks() -> None:
    fmt = AudioFormat(8000, "pcm16", channels=2)
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((1000, 2)) * 0.1).astype(np.float32)
    raw = encode(x, fmt)
    dec = Decoder(fmt)
    out, i = [], 0
    while i < len(raw):
        n = int(rng.integers(0, 9))
        out.append(dec.decode(raw[i : i + n]))
        i += n
    assert dec.pending_bytes == 0
    assert np.array_equal(np.concatenate(out), decode(raw, fmt))


def test_bad_input_is_a_clear_error() -> None:
    fmt = AudioFormat(16000, "pcm16")
    with pytest.raises(AudioFormatError, match="whole number"):
        decode(b"\x00\x01\x02", fmt)
    with pytest.raises(AudioFormatError, match="NaN or infinite"):
        decode(np.array([0.0, np.nan, np.inf], np.float32), fmt)
    with pytest.raises(AudioFormatError, match="dtype"):
        decode(np.array([1, 2], np.int64), fmt)
    with pytest.raises(AudioFormatError, match="bytes or a numpy array"):
        decode("hello", fmt)  # type: ignore[arg-type]
    with pytest.raises(AudioFormatError, match="unknown audio encoding"):
        AudioFormat(16000, "mp3")  # type: ignore[arg-type]
    with pytest.raises(AudioFormatError, match="sample_rate"):
        AudioFormat(0)
    with pytest.raises(AudioFormatError, match="channels"):
        AudioFormat(16000, channels=0)


def test_decoder_rejects_nan_chunk_without_losing_state() -> None:
    fmt = AudioFormat(16000, "float32")
    dec = Decoder(fmt)
    raw = np.float32([0.5, np.nan]).tobytes()
    first = dec.decode(raw[:3])  # a partial frame waits for its last byte
    assert first.shape == (0, 1) and dec.pending_bytes == 3
    with pytest.raises(AudioFormatError):
        dec.decode(raw[3:])  # completes 0.5, but the chunk also holds a NaN: rejected whole
    assert dec.pending_bytes == 3
    assert dec.decode(raw[3:4])[:, 0].tolist() == [0.5]
