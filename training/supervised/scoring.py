"""Scoring clips window by window with any scorer (a torch model or an ONNX bundle), as the runtime does.

A *scorer* is a function ``audio [B, S] float32 -> score [B]``. Clips are cut with
:func:`training.oneclass.data.windows` (full windows every hop, a short clip once as it is, the tail covered
by a last full window), and windows of equal length are batched. Every detector of the protocol goes through
this one function, so the one-class model, the supervised model and their fusion are compared on identical
windows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from training.oneclass.data import AudioCache, Clip, windows

Scorer = Callable[[np.ndarray], np.ndarray]


def _batches(
    clips: list[Clip], cache: AudioCache, window: int, hop: int, min_samples: int, batch: int
) -> Iterator[tuple[list[int], np.ndarray]]:
    pending: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for ci, clip in enumerate(clips):
        for w in windows(cache.get(clip), window, hop, min_samples):
            pending[len(w)].append((ci, w))
            if len(pending[len(w)]) >= batch:
                items = pending.pop(len(w))
                yield [i for i, _ in items], np.stack([x for _, x in items])
    for items in pending.values():
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            yield [i for i, _ in chunk], np.stack([x for _, x in chunk])


def score_windows(
    scorer: Scorer, clips: list[Clip], cache: AudioCache, window_s: float, hop_s: float, min_audio_s: float,
    sample_rate: int = 16000, batch: int = 16, progress: Callable[[int], None] | None = None,
) -> dict[Path, np.ndarray]:  # fmt: skip
    """``{clip path: window scores}``; clips shorter than ``min_audio_s`` are absent from the result."""
    acc: dict[int, list[float]] = defaultdict(list)
    sr = sample_rate
    for idx, audio in _batches(
        clips, cache, int(window_s * sr), int(hop_s * sr), int(min_audio_s * sr), batch
    ):
        values = np.asarray(scorer(audio.astype(np.float32)), dtype=np.float64).reshape(-1)
        for ci, v in zip(idx, values.tolist(), strict=True):
            acc[ci].append(v)
        if progress is not None:
            progress(len(idx))
    return {clips[ci].path: np.asarray(acc[ci]) for ci in sorted(acc)}


def torch_scorer(model: torch.nn.Module) -> Scorer:
    """A scorer from a module returning ``(score, map)``; runs in eval mode without gradients."""

    def run(audio: np.ndarray) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            return model(torch.from_numpy(audio))[0].numpy()

    return run


def clip_scores(window_scores: dict[Path, np.ndarray], clips: list[Clip]) -> np.ndarray:
    """Clip score = mean of its window scores, in the order of ``clips`` (clips without windows skipped)."""
    return np.array([float(np.mean(window_scores[c.path])) for c in clips if c.path in window_scores])
