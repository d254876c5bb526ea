"""Serve any stream-guard model over KServe v2 (gRPC and HTTP) with the Triton server inside pytriton.

    python -m stream_guard.backends.kserve_server --model bundle.onnx [--name NAME] [--grpc-port 8001]

The front ends then run ``stream-guard ... --model grpc://HOST:8001/NAME``. This is the quick way to scale
out on machines without a full Triton installation: the ``nvidia-pytriton`` wheel carries a Triton server
that calls a Python function, here the same in-process backend the runtime uses (``load_backend``), so it
serves anything ``--model`` accepts locally: a bundle, a fusion file (two bundles and their fused score,
which a plain Triton model repository cannot express), an embedded model's short name. For a full Triton
server with its own ONNX Runtime backend (GPU, TensorRT), write a model repository with
``python -m export triton`` instead; both declare the same tensors (:func:`kserve.model_signature`) and
publish the bundle's metadata the same way, so the client cannot tell them apart.

It lives in the runtime package (not under ``export/`` or ``benchmarks/``) because it is runtime code that
ships in the wheel and is the server half of :mod:`stream_guard.backends.kserve`'s contract.

Install: ``pip install 'stream-guard[pytriton]'``. nvidia-pytriton 0.7 requires numpy < 2 while the training
extras need numpy >= 2, so give the server its own virtual environment when both are wanted.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Any

import numpy as np

from stream_guard.backends.base import BackendError, InferenceBackend
from stream_guard.backends.kserve import TensorSpec, metadata_json, model_signature
from stream_guard.bundle import METADATA_KEY, BundleError

log = logging.getLogger("stream_guard.kserve_server")

_INSTALL_HINT = (
    "pip install 'stream-guard[pytriton]' (nvidia-pytriton pins numpy < 2: use its own virtual "
    "environment next to the training extras)"
)


class ServerError(RuntimeError):
    """A problem the user can fix (bad model, missing package, busy port); the message says which."""


def map_rows(backend: InferenceBackend) -> int | None:
    """Frequency rows of the model's map, measured by scoring one window of silence (also a warm-up)."""
    meta = backend.metadata
    _, amap = backend.infer(np.zeros((1, meta.window_samples), np.float32))
    return int(amap.shape[1]) if amap.ndim == 3 else None


def make_infer_function(backend: InferenceBackend) -> Any:
    """The batched callable pytriton runs: ``audio [B, S]`` -> ``score [B, 1]``, ``anomaly_map``.

    pytriton's ``@batch`` hands the callable whole batches (after Triton's dynamic batcher has merged the
    requests of several front ends) as numpy arrays keyed by input name.
    """
    from pytriton.decorators import batch

    @batch
    def infer(audio: np.ndarray) -> dict[str, np.ndarray]:
        score, amap = backend.infer(np.asarray(audio, dtype=np.float32))
        return {"score": score.reshape(-1, 1).astype(np.float32), "anomaly_map": amap.astype(np.float32)}

    return infer


def _tensor(spec: TensorSpec) -> Any:
    from pytriton.model_config import Tensor

    return Tensor(name=spec.name, dtype=np.float32, shape=spec.dims)


def _publish_metadata(model_name: str, text: str) -> None:
    """Add the ``stream_guard`` parameter to the model configuration pytriton generates.

    pytriton has no public option for model config parameters, so this wraps the one method that builds
    the configuration (pinned pytriton 0.7.x; a missing method is reported, never ignored): clients read
    the bundle metadata from there (see :mod:`stream_guard.backends.kserve`).
    """
    from pytriton.models import model as pt_model

    original = getattr(pt_model.Model, "_get_triton_model_config", None)
    if original is None:
        raise ServerError(
            "this nvidia-pytriton version cannot carry model metadata (Model._get_triton_model_config is "
            "gone); install nvidia-pytriton 0.7.x"
        )
    if getattr(original, "_stream_guard", False):
        original = original.__wrapped__  # type: ignore[attr-defined]

    def with_metadata(self: Any) -> Any:
        config = original(self)
        if self.model_name == model_name:
            config.backend_parameters[METADATA_KEY] = text
        return config

    with_metadata.__wrapped__ = original  # type: ignore[attr-defined]
    with_metadata._stream_guard = True  # type: ignore[attr-defined]
    pt_model.Model._get_triton_model_config = with_metadata


def use_this_interpreters_libpython() -> None:
    """Make the Triton Python-backend stub load this interpreter's libpython.

    The stub links ``libpython3.X.so`` by name; when this Python is not the system's (pyenv, conda, a
    uv-managed build) the loader finds the system library of another patch release, whose C modules do not
    match this interpreter's standard library (e.g. ``'_thread.RLock' object has no attribute
    '_recursion_count'`` when the model loads). Putting this interpreter's library directory first on
    ``LD_LIBRARY_PATH``, which the server and the stub inherit, fixes that and is harmless otherwise.
    """
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if not libdir or not soname or not (Path(libdir) / soname).exists():
        return
    paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    if not paths or paths[0] != libdir:
        os.environ["LD_LIBRARY_PATH"] = ":".join([libdir, *paths])


def serve(args: argparse.Namespace, ready: threading.Event | None = None) -> int:
    """Load the model, start Triton, serve until SIGINT/SIGTERM; returns the exit status."""
    from stream_guard.backends import load_backend

    try:
        from pytriton.model_config import DynamicBatcher, ModelConfig
        from pytriton.triton import Triton, TritonConfig
    except ImportError:
        raise ServerError(f"nvidia-pytriton is not installed ({_INSTALL_HINT})") from None
    if args.max_batch < 1 or args.instances < 1 or args.max_queue_delay_ms < 0:
        raise ServerError("--max-batch and --instances must be >= 1, --max-queue-delay-ms >= 0")
    backends = [
        load_backend(args.model, provider=args.provider, threads=args.threads) for _ in range(args.instances)
    ]
    try:
        meta = backends[0].metadata
        name = args.name or meta.name
        rows = map_rows(backends[0])
        audio, outputs = model_signature(meta, rows)
        _publish_metadata(name, metadata_json(meta))
        use_this_interpreters_libpython()
        config = TritonConfig(
            grpc_address=args.host,
            grpc_port=args.grpc_port,
            http_address=args.host,
            http_port=args.http_port,
            metrics_port=args.metrics_port,
            exit_timeout_secs=5,
            log_file=Path(args.log_file) if args.log_file else None,
        )
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            triton = Triton(config=config)
            triton.bind(
                model_name=name,
                infer_func=[make_infer_function(b) for b in backends],
                inputs=[_tensor(audio)],
                outputs=[_tensor(o) for o in outputs],
                config=ModelConfig(
                    max_batch_size=args.max_batch,
                    batcher=DynamicBatcher(max_queue_delay_microseconds=int(args.max_queue_delay_ms * 1000)),
                ),
                strict=True,
            )
            triton.run()
        except Exception as exc:  # pytriton raises several types; the first line says what went wrong
            text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ServerError(
                f"the Triton server did not start ({text}); are ports {args.grpc_port}/{args.http_port}/"
                f"{args.metrics_port} free?"
            ) from None
        try:
            host = args.host if args.host not in ("0.0.0.0", "::") else "HOST"
            print(
                f"serving {meta.name} ({args.model or 'default model'}) as grpc://{host}:{args.grpc_port}/{name}",
                flush=True,
            )
            if ready is not None:
                ready.set()
            while not stop.wait(1.0):
                if not triton.is_alive():
                    raise ServerError("the Triton server stopped unexpectedly")
        finally:
            triton.stop()
    finally:
        for b in backends:
            b.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stream_guard.backends.kserve_server",
        description="Serve a stream-guard model over KServe v2 (gRPC + HTTP) with pytriton's Triton server.",
        epilog="Clients: stream-guard ... --model grpc://HOST:GRPC_PORT/NAME (docs/triton.md).",
    )
    p.add_argument(
        "--model",
        default=None,
        help="bundle (.onnx), fusion file (.json) or embedded model (default: default)",
    )
    p.add_argument("--name", default=None, help="model name on the server (default: the bundle's name)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--max-batch", type=int, default=32, help="largest batch per model call (default 32)")
    p.add_argument(
        "--max-queue-delay-ms",
        type=float,
        default=1.0,
        help="how long Triton may hold a request to merge it with others (default 1 ms)",
    )
    p.add_argument("--instances", type=int, default=1, help="model instances running in parallel (default 1)")
    p.add_argument("--log-file", default=None, help="write Triton's own log there (default: the console)")
    p.add_argument("--provider", default="auto", help="onnxruntime provider: auto, cpu, cuda, tensorrt")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads per instance")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return serve(args)
    except (ServerError, BundleError, BackendError) as exc:
        print(f"kserve_server: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
