"""Inference backends: the :class:`InferenceBackend` protocol and its implementations.

``load_backend`` picks one from what the user names: a bundle path (or None for the embedded default) runs
in-process with onnxruntime; a fusion file (``*.json``, see :mod:`stream_guard.backends.fused`) runs a
one-class + supervised pair as one backend. Remote backends (a KServe v2 / Triton server) will be named by
URL and live in their own module here; the scheme table below is where they plug in.
"""

from __future__ import annotations

from pathlib import Path

from stream_guard.backends.base import BackendError, InferenceBackend, check_outputs
from stream_guard.backends.fused import FusedBackend, is_fusion_path
from stream_guard.backends.onnxruntime import OnnxRuntimeBackend

_REMOTE_SCHEMES = ("grpc://", "http://", "https://", "kserve://", "triton://")


def load_backend(
    model: str | Path | None = None, provider: str = "auto", threads: int | None = None
) -> InferenceBackend:
    """A ready backend for ``model`` (a bundle path; None = the bundle embedded in the package).

    Raises :class:`stream_guard.bundle.BundleError` for a file that is not a bundle and :class:`BackendError`
    for a provider or install problem; both carry a message meant for the user.
    """
    if isinstance(model, str) and model.lower().startswith(_REMOTE_SCHEMES):
        raise BackendError(
            f"{model}: remote inference servers are not supported by this version; pass the path "
            "of a bundle (.onnx)"
        )
    if is_fusion_path(model):  # a fused detector pair (NAME.fusion.json next to its two bundles)
        return FusedBackend(model, provider=provider, threads=threads)
    return OnnxRuntimeBackend(model, provider=provider, threads=threads)


__all__ = [
    "BackendError", "FusedBackend", "InferenceBackend", "OnnxRuntimeBackend", "check_outputs", "load_backend",
]  # fmt: skip
