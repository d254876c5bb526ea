"""The AntiDeepfake detector on a transformers backbone: normalise, encode, mean-pool, Linear(D, 2).

The head's two outputs are ``[fake, real]`` logits, in that order, exactly as in the released checkpoints
(label
``real`` is class 1). Because the head is linear, applying it to every frame embedding gives a per-frame track
whose mean over frames equals the pooled utterance logit: the track says *where in time* the utterance score
came from, at the backbone's 20 ms frame rate. The head was trained on pooled embeddings only, so single
frames are uncalibrated; the runtime treats the track as an explanation, not as a second score.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.antideepfake.architectures import RECEPTIVE_FIELD, ArchSpec

FAKE, REAL = 0, 1
#: Variance floor of the waveform normalisation (torch.nn.functional.layer_norm's default eps).
NORM_EPS = 1e-5


def normalise_waveform(wav: torch.Tensor) -> torch.Tensor:
    """Per-utterance zero mean, unit variance: AntiDeepfake's ``layer_norm(wav, wav.shape)`` for each row.

    Written with elementary ops (biased variance, eps 1e-5, like ``F.layer_norm``) so that the ONNX graph
    holds the same arithmetic for any length; the statistics are per row, so a batch never mixes utterances.
    """
    mean = wav.mean(dim=-1, keepdim=True)
    centred = wav - mean
    var = (centred * centred).mean(dim=-1, keepdim=True)
    return centred * torch.rsqrt(var + NORM_EPS)


@dataclass
class DetectorOutput:
    """``logits`` [B, 2] = [fake, real]; ``frame_logits`` [B, T, 2]; ``embedding`` [B, D] (pooled)."""

    logits: torch.Tensor
    frame_logits: torch.Tensor
    embedding: torch.Tensor

    @property
    def score(self) -> torch.Tensor:
        """logit(fake) - logit(real) per utterance: the log-odds of "fake" under the 2-way softmax."""
        return self.logits[:, FAKE] - self.logits[:, REAL]

    @property
    def frame_score(self) -> torch.Tensor:
        """logit(fake) - logit(real) per frame, [B, T]; its mean over T equals :attr:`score`."""
        return self.frame_logits[..., FAKE] - self.frame_logits[..., REAL]


def build_backbone(spec: ArchSpec) -> nn.Module:
    """A randomly initialised transformers ``Wav2Vec2Model`` / ``HubertModel`` with the spec's layout."""
    from transformers import HubertModel, Wav2Vec2Model

    config = spec.hf_config()
    model = HubertModel(config) if spec.family == "hubert" else Wav2Vec2Model(config)
    return model


class AntiDeepfakeDetector(nn.Module):
    """Waveform [B, S] at 16 kHz -> :class:`DetectorOutput`.

    State-dict layout: ``backbone.*`` (transformers names) and ``head.weight`` / ``head.bias``. The released
    fairseq-style checkpoints are converted to this layout by :mod:`training.antideepfake.checkpoint`.
    """

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = build_backbone(spec)
        self.head = nn.Linear(spec.hidden, 2)

    def frame_embeddings(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, S] raw waveform -> [B, T, D] last-layer embeddings (the normalisation is applied here)."""
        if wav.dim() != 2:
            raise ValueError(f"expected a waveform batch [batch, samples], got shape {tuple(wav.shape)}")
        if wav.shape[-1] < RECEPTIVE_FIELD:
            raise ValueError(
                f"audio of {wav.shape[-1]} samples is shorter than one frame "
                f"({RECEPTIVE_FIELD} samples at 16 kHz)"
            )
        return self.backbone(normalise_waveform(wav)).last_hidden_state

    def forward(self, wav: torch.Tensor) -> DetectorOutput:
        frames = self.frame_embeddings(wav)
        pooled = frames.mean(dim=1)
        return DetectorOutput(logits=self.head(pooled), frame_logits=self.head(frames), embedding=pooled)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class ScoringGraph(nn.Module):
    """The bundle's function: ``audio`` [B, S] -> (``score`` [B], time track [B, T]).

    Both are logit(fake) - logit(real): higher = more likely synthetic, 0 = the model's 50/50 point.
    """

    def __init__(self, detector: AntiDeepfakeDetector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.detector(audio)
        return out.score, out.frame_score
