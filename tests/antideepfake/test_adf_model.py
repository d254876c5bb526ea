"""Detector behaviour: normalisation, pooled score vs frame track, input checks."""

from __future__ import annotations

import pytest
import torch

from training.antideepfake.architectures import ARCHITECTURES, num_frames
from training.antideepfake.model import AntiDeepfakeDetector, normalise_waveform


def test_normalisation_is_per_utterance_layer_norm() -> None:
    wav = torch.randn(3, 5000) * torch.tensor([[0.01], [1.0], [30.0]]) + 0.2
    out = normalise_waveform(wav)
    for row_in, row_out in zip(wav, out, strict=True):
        ref = torch.nn.functional.layer_norm(row_in, row_in.shape)  # AntiDeepfake: layer_norm(wav, wav.shape)
        assert torch.allclose(row_out, ref, atol=1e-5)


def test_batching_does_not_mix_utterances() -> None:
    torch.manual_seed(0)
    model = AntiDeepfakeDetector(ARCHITECTURES["mms_300m"].tiny()).eval()
    a, b = torch.randn(1, 8000), 5 * torch.randn(1, 8000)
    with torch.inference_mode():
        both = model(torch.cat([a, b])).score
        alone = torch.cat([model(a).score, model(b).score])
    assert torch.allclose(both, alone, atol=1e-5)


@pytest.mark.parametrize("name", ["w2v_small", "hubert_xl", "xlsr_2b"])
def test_frame_track_mean_equals_pooled_score(name: str) -> None:
    torch.manual_seed(1)
    model = AntiDeepfakeDetector(ARCHITECTURES[name].tiny()).eval()
    wav = torch.randn(2, 16_000)
    with torch.inference_mode():
        out = model(wav)
    assert out.logits.shape == (2, 2)
    assert out.frame_score.shape == (2, num_frames(16_000))
    assert torch.allclose(out.frame_score.mean(dim=1), out.score, atol=1e-5)
    assert torch.allclose(out.score, out.logits[:, 0] - out.logits[:, 1])


def test_level_invariance() -> None:
    """The waveform normalisation makes the score (nearly) gain-independent; eps 1e-5 is the limit."""
    torch.manual_seed(2)
    model = AntiDeepfakeDetector(ARCHITECTURES["w2v_large"].tiny()).eval()
    wav = torch.randn(1, 12_000)
    with torch.inference_mode():
        ref = model(wav).score
        for gain in (0.1, 10.0):
            assert torch.allclose(ref, model(wav * gain).score, atol=1e-3)


def test_rejects_bad_shapes() -> None:
    model = AntiDeepfakeDetector(ARCHITECTURES["w2v_small"].tiny()).eval()
    with pytest.raises(ValueError, match="batch"):
        model(torch.randn(8000))
    with pytest.raises(ValueError, match="shorter than one frame"):
        model(torch.randn(1, 300))
