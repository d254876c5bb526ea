"""The inference backend interface: a pure function from a batch of windows to scores and maps.

Per-stream state lives in the streams, never in the backend, so windows of many streams share one call. A
backend is used from one worker thread at a time per call; ``infer`` must be thread-safe if an engine runs
several workers (onnxruntime sessions are).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from stream_guard.bundle import BundleMetadata


class BackendError(RuntimeError):
    """A backend cannot be created or used (missing provider, broken install, unreachable server)."""


@runtime_checkable
class InferenceBackend(Protocol):
    """What the engine needs from a model runtime.

    ``infer`` takes float32 ``[B, S]`` windows of equal length at ``metadata.sample_rate`` and returns
    ``score`` ``[B]`` and ``anomaly_map`` ``[B, F, T]`` (or ``[B, T]`` for a time-track model).
    """

    metadata: BundleMetadata

    def infer(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


def check_outputs(
    batch: int, score: np.ndarray, amap: np.ndarray, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Shape-check a backend's outputs so a broken model fails with a message, not an IndexError later."""
    score = np.asarray(score, dtype=np.float32).reshape(-1)
    amap = np.asarray(amap, dtype=np.float32)
    if score.shape[0] != batch:
        raise BackendError(f"{source}: 'score' has {score.shape[0]} values for a batch of {batch}")
    if amap.ndim not in (2, 3) or amap.shape[0] != batch:
        raise BackendError(
            f"{source}: 'anomaly_map' has shape {amap.shape}, expected [{batch}, F, T] or [{batch}, T]"
        )
    return score, amap
