"""Anomaly-map pictures: the audio's spectrogram with the detector's anomaly map laid over it and the score
curve under it (matplotlib, Agg backend, no display needed).

:class:`MapRecorder` is a sink fed with a stream's events; it keeps only what the picture needs (map columns
and one point per scored window), so its memory grows with the stream's duration at the map's frame rate, not
the audio's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream_guard.events import Event, MapEvent, ScoreEvent


@dataclass
class MapRecorder:
    """Collects the map columns and score points of one stream."""

    freq_hz: list[float] = field(default_factory=list)
    frame_step_s: float = 0.0
    map_start_s: float | None = None
    columns: list[np.ndarray] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)

    def write(self, event: Event) -> None:
        if isinstance(event, MapEvent) and event.columns:
            block = np.asarray(event.columns, dtype=np.float32)
            if block.ndim == 1:
                block = block[None, :]
            if self.map_start_s is None:
                self.map_start_s = event.start_s
                self.frame_step_s = event.frame_step_s
                self.freq_hz = list(event.freq_hz)
            self.columns.append(block)
        elif isinstance(event, ScoreEvent):
            self.times.append(0.5 * (event.start_s + event.end_s))
            self.probabilities.append(event.probability)
            self.scores.append(event.score)
            self.verdicts.append(event.verdict)

    def anomaly_map(self) -> np.ndarray:
        """The stitched map ``[rows, columns]`` (empty when no map events arrived)."""
        if not self.columns:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(self.columns, axis=1)


def spectrogram_db(
    audio: np.ndarray, sample_rate: int, max_columns: int = 3000
) -> tuple[np.ndarray, float, float]:
    """Log-power spectrogram of mono audio for display: (``[freq, time]`` in dB, hop in s, bin width in Hz).

    The hop grows with the duration so that an hour of audio still gives a picture of at most ``max_columns``
    columns; the frame is 32 ms (a speech-sized frame whatever the sample rate).
    """
    n_fft = 1 << int(np.ceil(np.log2(max(64, 0.032 * sample_rate))))
    hop = max(n_fft // 4, int(np.ceil(len(audio) / max_columns)))
    if len(audio) < n_fft:
        audio = np.pad(audio, (0, n_fft - len(audio)))
    n_frames = 1 + (len(audio) - n_fft) // hop
    window = np.hanning(n_fft).astype(np.float32)
    spec = np.empty((n_fft // 2 + 1, n_frames), dtype=np.float32)
    for start in range(0, n_frames, 512):  # chunks keep the frame matrix small for long audio
        idx = np.arange(start, min(n_frames, start + 512))
        frames = np.stack([audio[i * hop : i * hop + n_fft] for i in idx]) * window
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        spec[:, idx] = (10.0 * np.log10(power + 1e-10)).T
    return spec, hop / sample_rate, sample_rate / n_fft


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around (possibly non-uniform, e.g. mel) centre frequencies, for pcolormesh."""
    if len(centres) == 1:
        return np.array([max(0.0, centres[0] - 50.0), centres[0] + 50.0])
    mids = 0.5 * (centres[1:] + centres[:-1])
    first = max(0.0, centres[0] - (mids[0] - centres[0]))
    last = centres[-1] + (centres[-1] - mids[-1])
    return np.concatenate([[first], mids, [last]])


def render_map_png(
    path: str | Path,
    recorder: MapRecorder,
    audio: np.ndarray | None,
    sample_rate: int,
    title: str,
    threshold_probability: float = 0.5,
) -> Path:
    """Draw the spectrogram + anomaly overlay (top) and the score curve (bottom) into ``path``.

    The overlay shows the anomaly map normalised to its own 1st-99th percentile range, transparent where it is
    low, so the regions the detector found most unlike real speech stand out over the speech they came from.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_top, ax_bottom) = plt.subplots(
        2, 1, figsize=(11, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}, constrained_layout=True
    )
    duration = 0.0
    if audio is not None and len(audio):
        duration = len(audio) / sample_rate
        spec, hop_s, bin_hz = spectrogram_db(audio, sample_rate)
        vmax = float(np.percentile(spec, 99.5))
        ax_top.imshow(
            spec,
            origin="lower",
            aspect="auto",
            cmap="gray_r",
            vmin=vmax - 80.0,
            vmax=vmax,
            extent=(0.0, spec.shape[1] * hop_s, 0.0, spec.shape[0] * bin_hz),
            interpolation="nearest",
        )
    amap = recorder.anomaly_map()
    if amap.size and np.isfinite(amap).any():
        lo, hi = np.nanpercentile(amap, [1, 99])
        # columns whose windows were dropped carry no value: drawn transparent
        norm = np.nan_to_num(np.clip((amap - lo) / max(hi - lo, 1e-9), 0.0, 1.0), nan=0.0)
        t0 = recorder.map_start_s or 0.0
        t_edges = t0 + recorder.frame_step_s * np.arange(amap.shape[1] + 1)
        duration = max(duration, float(t_edges[-1]))
        if recorder.freq_hz and len(recorder.freq_hz) == amap.shape[0]:
            f_edges = _edges(np.asarray(recorder.freq_hz, dtype=np.float64))
        else:  # a time-only model: one band over the whole spectrum
            f_edges = np.linspace(0.0, sample_rate / 2, amap.shape[0] + 1)
        rgba = np.zeros(norm.shape + (4,), dtype=np.float32)
        rgba[..., :3] = matplotlib.colormaps["inferno"](norm)[..., :3]
        rgba[..., 3] = 0.7 * norm**2.5  # only the most anomalous cells stand out over the spectrogram
        ax_top.pcolormesh(t_edges, f_edges, rgba, shading="flat")
        ax_top.set_ylim(0.0, float(f_edges[-1]) if audio is None else sample_rate / 2)
    ax_top.set_ylabel("frequency (Hz)")
    ax_top.set_title(title, fontsize=10, loc="left")

    if recorder.times:
        t = np.asarray(recorder.times)
        p = np.asarray(recorder.probabilities)
        ax_bottom.plot(
            t, p, color="tab:red", lw=1.4, marker="o" if len(t) < 60 else None, ms=3, label="P(synthetic)"
        )
        ax_bottom.fill_between(
            t,
            threshold_probability,
            p,
            where=p >= threshold_probability,
            color="tab:red",
            alpha=0.25,
            interpolate=True,
        )
    ax_bottom.axhline(threshold_probability, color="0.4", ls="--", lw=0.8, label="decision threshold")
    ax_bottom.set_ylim(-0.02, 1.02)
    ax_bottom.set_ylabel("P(synthetic)")
    ax_bottom.set_xlabel("time (s)")
    ax_bottom.legend(loc="upper right", fontsize=8)
    if duration > 0:
        ax_bottom.set_xlim(0.0, duration)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
