"""Inference backends: the :class:`InferenceBackend` protocol and its implementations.

``load_backend`` picks one from what the user names: a bundle path runs in-process with onnxruntime; a
fusion file (``*.json``, see :mod:`stream_guard.backends.fused`) runs a one-class + supervised pair as one
backend. None, the default model, is the embedded fused pair. Remote backends (a KServe v2 / Triton server)
will be named by URL and live in their own module here; the scheme table below is where they plug in.
"""

from __future__ import annotations

from pathlib import Path

from stream_guard.backends.base import BackendError, InferenceBackend, check_outputs
from stream_guard.backends.fused import FusedBackend, is_fusion_path
from stream_guard.backends.onnxruntime import OnnxRuntimeBackend
from stream_guard.bundle import resolve_model_path

_REMOTE_SCHEMES = ("grpc://", "http://", "https://", "kserve://", "triton://")


def load_backend(
    model: str | Path | None = None, provider: str = "auto", threads: int | None = None
) -> InferenceBackend:
    """A ready backend for ``model``: a bundle (``.onnx``), a fusion file (``.json``), an embedded model's
    short name (``fused``, ``oneclass``, ``supervised``) or None, the default model (the embedded fused pair,
    :func:`stream_guard.bundle.default_model_path`).

    Raises :class:`stream_guard.bundle.BundleError` for a file that is not a bundle and :class:`BackendError`
    for a provider or install problem; both carry a message meant for the user.
    """
    if isinstance(model, str) and model.lower().startswith(_REMOTE_SCHEMES):
        raise BackendError(
            f"{model}: remote inference servers are not supported by this version; pass the path "
            "of a bundle (.onnx)"
        )
    path = resolve_model_path(model)  # None and the short names resolve to the embedded models
    if is_fusion_path(path):  # a fused detector pair (NAME.fusion.json next to its two bundles)
        return FusedBackend(path, provider=provider, threads=threads)
    return OnnxRuntimeBackend(path, provider=provider, threads=threads)


__all__ = [
    "BackendError", "FusedBackend", "InferenceBackend", "OnnxRuntimeBackend", "check_outputs", "load_backend",
]  # fmt: skip
