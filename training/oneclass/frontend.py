"""Waveform -> log-mel image, written in plain torch so that it exports into the ONNX bundle.

Every preprocessing step lives inside the model graph (DESIGN.md, "The model bundle"), so the runtime never
re-implements features and PyTorch/ONNX parity covers the front end too. Choices and why:

- **Level normalisation** divides the power spectrum by the window's level before the log. The level is a
  power mean (order 4) of per-frame mean-square energies: it follows the loud (speech) frames, so padding a
  clip with silence or lowering it by 12 dB barely moves the image, and a floor on the level keeps a silent
  window from being amplified into noise.
- **STFT as a strided conv1d** with fixed DFT weights: the fastest form in onnxruntime (the ONNX STFT op is
  several times slower and has no CUDA kernel). A 25 ms Hann window with a 512-point DFT basis; no centre
  padding, so a window of ``n`` samples gives ``1 + (n - 400) // 160`` frames.
- **HTK mel filterbank** computed in torch (identical to torchaudio's ``melscale_fbanks(norm=None,
  mel_scale="htk")``), so no torchaudio dependency.
- **Log with a floor** 40 dB below the normalised level: exact digital zeros, dither and codec noise floors
  all land on the same value, which removes "silence looks different" shortcuts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


def hz_to_mel(f: float | torch.Tensor) -> float | torch.Tensor:
    """HTK mel scale."""
    if isinstance(f, torch.Tensor):
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_to_hz(m: float | torch.Tensor) -> float | torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    if isinstance(m, torch.Tensor):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def htk_mel_filterbank(
    n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int
) -> torch.Tensor:
    """Triangular HTK mel filters, shape ``[n_freqs, n_mels]`` (same maths as torchaudio's
    melscale_fbanks)."""
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    m_pts = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    f_pts = mel_to_hz(m_pts)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = torch.clamp(torch.minimum(down, up), min=0.0)
    return fb.to(torch.float32)


def mel_centres_hz(f_min: float, f_max: float, n_mels: int) -> list[float]:
    """Centre frequency (Hz) of each mel band."""
    m_pts = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    return [float(x) for x in mel_to_hz(m_pts[1:-1])]


@dataclass(frozen=True)
class FrontEndConfig:
    """Geometry and level handling of the log-mel image (16 kHz input)."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 20.0
    f_max: float = 8000.0
    level_order: float = 4.0
    level_floor: float = 1e-6  # mean-square power, about -60 dBFS: quieter windows are not amplified further
    log_floor: float = 1e-4  # relative to the normalised level: -40 dB
    db_offset: float = 10.0
    db_scale: float = 25.0

    def frames(self, samples: int) -> int:
        """Number of spectrogram frames for a window of ``samples`` samples."""
        return 1 + (samples - self.win_length) // self.hop_length

    @property
    def frame_step_s(self) -> float:
        return self.hop_length / self.sample_rate

    @property
    def min_samples(self) -> int:
        return self.win_length


class LogMelFrontEnd(nn.Module):
    """``audio [B, S]`` float32 at 16 kHz -> image ``[B, 3, n_mels, frames]`` scaled for an ImageNet network.

    Rows run from low to high frequency. The three image channels are identical (the teachers saw RGB).
    """

    def __init__(self, cfg: FrontEndConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or FrontEndConfig()
        c = self.cfg
        n_bins = c.n_fft // 2 + 1
        n = torch.arange(c.win_length, dtype=torch.float64)
        window = 0.5 - 0.5 * torch.cos(2.0 * math.pi * n / c.win_length)  # periodic Hann
        k = torch.arange(n_bins, dtype=torch.float64).unsqueeze(1)
        phase = 2.0 * math.pi * k * n.unsqueeze(0) / c.n_fft
        # A DFT basis of n_fft points over win_length taps equals zero padding the frame to n_fft: the power
        # spectrum is the same as torch.stft's; only the phase differs, which the power discards.
        norm = torch.sqrt(torch.sum(window**2))
        basis = torch.cat([torch.cos(phase) * window, -torch.sin(phase) * window], dim=0) / norm
        self.register_buffer("dft", basis.to(torch.float32).unsqueeze(1), persistent=False)
        fb = htk_mel_filterbank(n_bins, c.f_min, c.f_max, c.n_mels, c.sample_rate)
        self.register_buffer("mel_fb", fb.t().contiguous(), persistent=False)  # [n_mels, n_bins]
        self.n_bins = n_bins

    def power_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """Level-normalised mel power ``[B, n_mels, frames]`` (before the log)."""
        c = self.cfg
        x = audio.unsqueeze(1)  # [B, 1, S]
        x = x - x.mean(dim=-1, keepdim=True)
        spec = F.conv1d(x, self.dft, stride=c.hop_length)  # [B, 2*n_bins, T]
        re, im = spec[:, : self.n_bins], spec[:, self.n_bins :]
        power = re * re + im * im
        mel = torch.matmul(self.mel_fb, power)  # [B, n_mels, T]
        frame_ms = F.avg_pool1d(x * x, kernel_size=c.win_length, stride=c.hop_length)  # [B, 1, T]
        p = c.level_order
        # Power mean relative to the loudest frame, so frame_ms**p cannot underflow float32.
        # clamp_min rather than "+ 1e-20": the exporter drops an addition that small, and an all-zero window
        # then divides 0 by 0 in the bundle (NaN) while PyTorch stays finite.
        peak = torch.clamp_min(torch.amax(frame_ms, dim=-1, keepdim=True), 1e-20)
        level = peak * torch.mean((frame_ms / peak) ** p, dim=-1, keepdim=True) ** (1.0 / p)  # [B, 1, 1]
        return mel / (level + c.level_floor)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        mel = self.power_mel(audio)
        db = 10.0 * torch.log10(mel + c.log_floor)
        img = (db + c.db_offset) / c.db_scale
        return img.unsqueeze(1).expand(-1, 3, -1, -1)
