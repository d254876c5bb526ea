"""Synthetic speech: TTS engines, resyntheses of real clips, and the text clean-up that keeps clips short."""

from __future__ import annotations

import numpy as np
import pytest

from training.corpus.synth import (
    RESYNTHESIZERS,
    SynthesisError,
    TTSVoice,
    clean_text,
    engine_available,
    synthesize,
    tts_voices,
)
from training.corpus.vad import load_vad


def test_clean_text_drops_notes_and_caps_length() -> None:
    assert clean_text("Voce disattivata. (You are now muted.)") == "Voce disattivata"
    assert clean_text("...to mute or unmute yourself.") == "to mute or unmute yourself"
    long = "One two three four. " + " ".join(["word"] * 40) + "."
    out = clean_text(long, max_words=28)
    assert out == "One two three four."
    assert len(clean_text(" ".join(["word"] * 40), max_words=10).split()) == 10


@pytest.mark.parametrize("engine", ["espeak", "flite", "festival"])
def test_each_engine_speaks(engine: str) -> None:
    if not engine_available(engine):
        pytest.skip(f"{engine} is not installed")
    voice = next(v for v in tts_voices() if v.engine == engine)
    x, sr = synthesize(voice, "Please enter your account number followed by the pound key.")
    assert sr in (16000, 22050) and 1.5 < x.shape[0] / sr < 8.0
    vad = load_vad()
    if vad is not None:
        assert vad.speech_fraction(x, sr) > 0.3


def test_unknown_voice_fails_with_the_voice_named() -> None:
    if not engine_available("flite"):
        pytest.skip("flite is not installed")
    with pytest.raises(SynthesisError, match="flite_nobody-nobody"):
        synthesize(TTSVoice("flite_nobody", "nobody", "en", "flite"), "hello there")


@pytest.mark.parametrize("system", sorted(RESYNTHESIZERS))
def test_resyntheses_keep_length_and_spectral_envelope(system: str) -> None:
    from training.augment.__main__ import speechlike

    x = speechlike(1.5)
    y = RESYNTHESIZERS[system](x, 16000)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    assert not np.allclose(x, y, atol=1e-3)  # a new waveform ...

    def envelope(z: np.ndarray) -> np.ndarray:
        spec = np.abs(np.fft.rfft(z)) ** 2
        bands = np.array_split(spec, 16)
        return 10 * np.log10(np.array([b.sum() for b in bands]) + 1e-12)

    ex, ey = envelope(x), envelope(y)
    assert np.corrcoef(ex, ey)[0, 1] > 0.9  # ... with the same coarse spectrum
