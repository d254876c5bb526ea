"""In-process inference with onnxruntime (CPU, CUDA or TensorRT execution providers).

Provider choice ``auto`` uses CUDA only when a GPU is really there: onnxruntime-gpu lists
``CUDAExecutionProvider`` among the available providers even on machines without a GPU or driver, and then
falls back (noisily) at session creation, so ``auto`` probes the driver by loading ``libcuda.so.1`` and asking
it for a device. onnxruntime and onnxruntime-gpu install the same Python module and silently overwrite each
other's files; with both installed the import may pick up a broken mix, so that case is refused with an
explanation.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from stream_guard.backends.base import BackendError, check_outputs
from stream_guard.bundle import BundleError, BundleMetadata, metadata_from_session, resolve_bundle_path

PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")
_ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino")


def installed_onnxruntime_distributions() -> list[str]:
    """Names of the installed distributions that provide the ``onnxruntime`` module."""
    found = []
    for name in _ORT_DISTRIBUTIONS:
        try:
            importlib_metadata.distribution(name)
        except importlib_metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def check_onnxruntime_install() -> None:
    """Refuse a mixed install (e.g. onnxruntime and onnxruntime-gpu) with the command that fixes it."""
    found = installed_onnxruntime_distributions()
    if len(found) > 1:
        keep = "onnxruntime-gpu" if "onnxruntime-gpu" in found else found[0]
        raise BackendError(
            f"several onnxruntime distributions are installed ({', '.join(found)}); they overwrite each "
            f"other's files. Fix: pip uninstall -y {' '.join(found)} && pip install {keep}"
        )


def cuda_device_count() -> int:
    """GPUs visible through the CUDA driver (0 without driver or device); never raises."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    try:
        if lib.cuInit(0) != 0:
            return 0
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    except (AttributeError, OSError):
        return 0


def resolve_providers(choice: str, available: Sequence[str]) -> list[str]:
    """Execution providers for a user's ``--provider`` choice, or a BackendError saying what is missing."""
    choice = choice.lower()
    if choice not in PROVIDER_CHOICES:
        raise BackendError(f"unknown provider {choice!r}; choose one of {', '.join(PROVIDER_CHOICES)}")
    cpu = ["CPUExecutionProvider"]
    if choice == "cpu":
        return cpu
    has_cuda = "CUDAExecutionProvider" in available
    if choice == "auto":
        return ["CUDAExecutionProvider", *cpu] if has_cuda and cuda_device_count() > 0 else cpu
    if not has_cuda:
        raise BackendError(
            f"provider {choice!r} needs onnxruntime-gpu (installed onnxruntime offers "
            f"{', '.join(available) or 'nothing'})"
        )
    if cuda_device_count() == 0:
        raise BackendError(
            f"provider {choice!r} needs an NVIDIA GPU and driver; none was found (libcuda.so.1)"
        )
    if choice == "cuda":
        return ["CUDAExecutionProvider", *cpu]
    if "TensorrtExecutionProvider" not in available:
        raise BackendError("provider 'tensorrt' is not available in this onnxruntime build")
    return ["TensorrtExecutionProvider", "CUDAExecutionProvider", *cpu]


def provider_options(providers: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """Per-provider settings for streaming: batch sizes and window lengths vary from call to call.

    CUDA: heuristic convolution algorithm choice, because the exhaustive search runs again for every new
    input shape and would put a latency spike on the first window of each batch size. TensorRT: engines are
    cached on disk (building one takes minutes), under ``~/.cache/stream-guard/tensorrt``.
    """
    out: list[tuple[str, dict[str, Any]]] = []
    for name in providers:
        if name == "CUDAExecutionProvider":
            out.append((name, {"cudnn_conv_algo_search": "HEURISTIC"}))
        elif name == "TensorrtExecutionProvider":
            cache = (
                Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stream-guard" / "tensorrt"
            )
            cache.mkdir(parents=True, exist_ok=True)
            out.append((name, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}))
        else:
            out.append((name, {}))
    return out


class OnnxRuntimeBackend:
    """Runs a bundle with onnxruntime; thread-safe, so several engine workers may share it.

    ``threads`` sets onnxruntime's intra-op threads (None = onnxruntime's default, one per core); on a machine
    shared by many streams one or two threads per worker usually give the best throughput. ``spin`` lets idle
    onnxruntime threads busy-wait for the next call: slightly faster back-to-back calls, but the spinning eats
    the CPU that the event loop needs to decode and window audio, so it is off by default.
    """

    def __init__(
        self, path: str | Path | None, provider: str = "auto", threads: int | None = None, spin: bool = False
    ) -> None:
        check_onnxruntime_install()
        import onnxruntime as ort

        self.path = resolve_bundle_path(path)
        self.provider_choice = provider
        providers = resolve_providers(provider, ort.get_available_providers())
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
        if threads is not None:
            if threads < 1:
                raise BackendError(f"threads must be >= 1, got {threads}")
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self._session: Any = ort.InferenceSession(
                str(self.path), opts, providers=provider_options(providers)
            )
        except Exception as exc:  # onnxruntime raises several exception types for bad files
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"{self.path}: not a readable ONNX model ({first})") from None
        self.metadata: BundleMetadata = metadata_from_session(self._session, str(self.path))
        self.providers: list[str] = list(self._session.get_providers())
        self.threads = threads
        self._outputs = ["score", "anomaly_map"]

    @property
    def device(self) -> str:
        """A short description for logs and benchmark reports."""
        return "cuda" if self.providers and self.providers[0] != "CPUExecutionProvider" else "cpu"

    def infer(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(audio, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise BackendError(f"{self.path}: infer expects float32 [batch, samples], got shape {x.shape}")
        score, amap = self._session.run(self._outputs, {"audio": x})
        return check_outputs(x.shape[0], score, amap, str(self.path))

    def close(self) -> None:
        self._session = None

    def __repr__(self) -> str:
        return f"OnnxRuntimeBackend({os.fspath(self.path)!r}, providers={self.providers})"
