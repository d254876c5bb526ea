"""Inference backends: the :class:`InferenceBackend` protocol and its implementations.

``load_backend`` picks one from what the user names: a bundle path runs in-process with onnxruntime; a
fusion file (``*.json``, see :mod:`stream_guard.backends.fused`) runs a one-class + supervised pair as one
backend. None, the default model, is the embedded fused pair. A URL ``grpc://HOST:PORT/MODEL`` scores on a
KServe v2 / Triton server (:mod:`stream_guard.backends.kserve`, docs/triton.md).
"""

from __future__ import annotations

from pathlib import Path

from stream_guard.backends.base import BackendError, InferenceBackend, check_outputs
from stream_guard.backends.fused import FusedBackend
from stream_guard.backends.kserve import is_remote_model
from stream_guard.backends.onnxruntime import OnnxRuntimeBackend
from stream_guard.bundle import is_fusion_file, resolve_model_path


def load_backend(
    model: str | Path | None = None, provider: str = "auto", threads: int | None = None
) -> InferenceBackend:
    """A ready backend for ``model``: a bundle (``.onnx``), a fusion file (``.json``), an embedded model's
    short name (``fused``, ``oneclass``, ``supervised``), None, the default model (the embedded fused pair,
    :func:`stream_guard.bundle.default_model_path`), or a KServe v2 server's ``grpc://HOST:PORT/MODEL``.

    Raises :class:`stream_guard.bundle.BundleError` for a file that is not a bundle and :class:`BackendError`
    for a provider or install problem; both carry a message meant for the user.
    """
    if is_remote_model(model):  # a server (the model, provider and threads are the server's business)
        from stream_guard.backends.kserve import KServeV2Backend

        return KServeV2Backend(str(model))
    path = resolve_model_path(model)  # None and the short names resolve to the embedded models
    if is_fusion_file(path):  # a fused detector pair (NAME.fusion.json next to its two bundles)
        return FusedBackend(path, provider=provider, threads=threads)
    return OnnxRuntimeBackend(path, provider=provider, threads=threads)


__all__ = [
    "BackendError", "FusedBackend", "InferenceBackend", "OnnxRuntimeBackend", "check_outputs", "load_backend",
]  # fmt: skip
