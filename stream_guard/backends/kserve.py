"""Remote inference on a KServe v2 server (NVIDIA Triton, or pytriton) over gRPC.

One machine's CPUs cap how many live streams it can score. With this backend the engine keeps the cheap,
per-stream work (decoding, resampling, windowing, calibration, verdicts, map stitching) and sends its
micro-batches of windows to an inference server that several front ends can share and that can sit on a GPU
machine. The model is named by a URL::

    grpc://HOST[:PORT]/MODEL[?timeout=SECONDS&version=N]

(port 8001, Triton's gRPC default, when omitted; ``timeout`` is the per-request deadline, default 5 s;
``version`` pins a model version, default the server's policy). ``load_backend`` selects this backend for
such a URL, so every command's ``--model`` accepts one.

The server must describe the model the way a bundle does: its model configuration carries a parameter
``stream_guard`` whose string value is the bundle's metadata JSON (sample rate, window, map axes,
calibration, ``extra``). The runtime needs all of it (calibration turns scores into verdicts, the map axes
place map columns in time and frequency), and reading it from the server keeps one source of truth: a
front end cannot run a calibration that does not belong to the served model. Both ways of serving a bundle
write it: ``python -m export triton`` (a model repository for a full Triton server) and
``python -m stream_guard.backends.kserve_server`` (pytriton). The tensor signature both declare is
:func:`model_signature`: ``audio`` FP32 ``[batch, -1]`` in, ``score`` FP32 ``[batch, 1]`` and
``anomaly_map`` FP32 ``[batch, F, -1]`` (or ``[batch, -1]``) out.

Failures, each a one-line :class:`BackendError` naming the URL: no server answering at start, an unknown or
unready model, a model whose signature or metadata does not fit, a request past its deadline, and a server
that vanishes mid-stream. The engine turns a failed ``infer`` into failed windows (its existing failure
path), so streams continue and close cleanly. After a transport failure (server unreachable or deadline
exceeded) the backend fails further calls at once for ``retry_after_s`` instead of waiting on a dead server
again: the engine retries the windows of a failed batch one by one, and without this pause a hung server
would cost one full deadline per window. The gRPC channel reconnects by itself once the server is back.

The client is ``tritonclient[grpc]`` (the ``triton`` extra: ``pip install 'stream-guard[triton]'``); it is
imported only when a URL is opened, so ``import stream_guard`` never needs it.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from stream_guard.backends.base import BackendError, check_outputs
from stream_guard.bundle import METADATA_KEY, BundleError, BundleMetadata

SCHEME = "grpc"
DEFAULT_PORT = 8001
DEFAULT_TIMEOUT_S = 5.0
INPUT_NAME = "audio"
OUTPUT_NAMES = ("score", "anomaly_map")
#: URL schemes ``load_backend`` treats as remote; only ``grpc://`` is served, the others get a hint.
REMOTE_SCHEMES = ("grpc://", "grpcs://", "http://", "https://", "kserve://", "triton://")
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")
_TRANSPORT_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED")
_INSTALL_HINT = "pip install 'stream-guard[triton]'"


def is_remote_model(model: object) -> bool:
    """Whether a ``--model`` value names a server (a URL) rather than a file or an embedded model."""
    return isinstance(model, str) and model.lower().startswith(REMOTE_SCHEMES)


@dataclass(frozen=True)
class KServeURL:
    """A parsed ``grpc://HOST[:PORT]/MODEL[?timeout=S&version=N]``."""

    host: str
    port: int
    model: str
    version: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def address(self) -> str:
        """``host:port`` as gRPC wants it (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{SCHEME}://{self.address}/{self.model}"


def parse_kserve_url(url: str) -> KServeURL:
    """Parse a model URL or raise a :class:`BackendError` that shows the expected form."""
    form = f"expected {SCHEME}://HOST[:PORT]/MODEL[?timeout=SECONDS&version=N]"
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme != SCHEME:
        why = (
            "KServe v2 over HTTP/REST is not supported, use its gRPC port"
            if scheme in ("http", "https")
            else "TLS is not supported yet, reach the server through a private network or a tunnel"
            if scheme == "grpcs"
            else "unknown scheme"
        )
        raise BackendError(f"{url}: {why}; {form}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise BackendError(f"{url}: the port is not a number in 1-65535; {form}") from None
    host = parts.hostname or ""
    model = parts.path.strip("/")
    if not host or not model:
        raise BackendError(f"{url}: the host or the model name is missing; {form}")
    if not MODEL_NAME_PATTERN.match(model):
        raise BackendError(
            f"{url}: {model!r} is not a model name (letters, digits, '.', '_' and '-' only); {form}"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"timeout", "version"})
    if unknown:
        raise BackendError(f"{url}: unknown option(s) {', '.join(unknown)}; {form}")
    timeout_s = DEFAULT_TIMEOUT_S
    if "timeout" in query:
        try:
            timeout_s = float(query["timeout"][-1])
        except ValueError:
            timeout_s = -1.0
        if not (0.0 < timeout_s < 3600.0):
            raise BackendError(f"{url}: timeout must be a number of seconds in (0, 3600)")
    version = query.get("version", [""])[-1]
    if version and not version.isdigit():
        raise BackendError(f"{url}: version must be a positive integer")
    return KServeURL(host=host, port=int(port), model=model, version=version, timeout_s=timeout_s)


# --- the tensor signature shared by both ways of serving (export/triton.py, kserve_server.py) --------


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the served model, dims WITHOUT the batch dimension (Triton's ``max_batch_size`` > 0)."""

    name: str
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None  # Triton's reshape: the model's own dims, when they differ


def model_signature(
    metadata: BundleMetadata, map_rows: int | None
) -> tuple[TensorSpec, tuple[TensorSpec, ...]]:
    """The input and outputs a stream-guard model is served with (all FP32, batched).

    ``audio`` takes any number of samples (streams send shorter warm-up windows before full ones). ``score``
    is ``[1]`` per item because Triton needs at least one dim beside the batch (a bundle's ``[batch]`` output
    is reshaped to ``[batch, 1]``). ``anomaly_map`` has ``map_rows`` frequency rows and any number of frames,
    or is a time track.
    """
    if metadata.map_axes.kind == "time_frequency":
        if map_rows is None or map_rows < 1:
            raise BundleError(f"{metadata.name}: a time x frequency map needs a fixed number of rows")
        amap = TensorSpec("anomaly_map", (int(map_rows), -1))
    else:
        amap = TensorSpec("anomaly_map", (-1,))
    return TensorSpec(INPUT_NAME, (-1,)), (TensorSpec("score", (1,), reshape=()), amap)


def metadata_from_config(config: dict[str, Any], source: str) -> BundleMetadata:
    """The bundle metadata carried by a model configuration (``as_json`` form), or a BackendError."""
    params = config.get("parameters") or {}
    entry = params.get(METADATA_KEY)
    text = entry.get("string_value") if isinstance(entry, dict) else None
    if not text:
        raise BackendError(
            f"{source}: the served model carries no stream-guard metadata (model config parameter "
            f"'{METADATA_KEY}'); serve bundles with `python -m export triton` or "
            "`python -m stream_guard.backends.kserve_server`"
        )
    try:
        return BundleMetadata.from_json(text, source)
    except BundleError as exc:
        raise BackendError(str(exc)) from None


def check_signature(model_metadata: dict[str, Any], metadata: BundleMetadata, source: str) -> None:
    """Check the served tensors (``as_json`` model metadata) against the stream-guard contract.

    Every shape the server lists starts with the batch dimension (-1); raises a BackendError naming the first
    mismatch, so a wrong deployment fails at start rather than on the first window.
    """
    inputs = {i["name"]: i for i in model_metadata.get("inputs", [])}
    outputs = {o["name"]: o for o in model_metadata.get("outputs", [])}
    if set(inputs) != {INPUT_NAME}:
        raise BackendError(
            f"{source}: the model must take exactly one input '{INPUT_NAME}', it takes {sorted(inputs)}"
        )
    missing = [n for n in OUTPUT_NAMES if n not in outputs]
    if missing:
        raise BackendError(f"{source}: the model lacks the output(s) {missing} (it has {sorted(outputs)})")
    shapes: dict[str, list[int]] = {}
    for name, entry in [(INPUT_NAME, inputs[INPUT_NAME])] + [(n, outputs[n]) for n in OUTPUT_NAMES]:
        if entry.get("datatype") != "FP32":
            raise BackendError(f"{source}: '{name}' is {entry.get('datatype')}, expected FP32")
        dims = [int(d) for d in entry.get("shape", [])]
        if not dims or dims[0] != -1:
            raise BackendError(f"{source}: '{name}' has shape {dims}; its first dimension must be the batch")
        shapes[name] = dims[1:]
    if shapes[INPUT_NAME] != [-1]:
        raise BackendError(
            f"{source}: 'audio' must take any number of samples per window (shape [-1, -1]); the server "
            f"declares {[-1, *shapes[INPUT_NAME]]}"
        )
    if shapes["score"] not in ([], [1]):
        raise BackendError(
            f"{source}: 'score' has shape {[-1, *shapes['score']]}, expected one value per window"
        )
    amap, rows = shapes["anomaly_map"], len(metadata.map_axes.freq_hz)
    if metadata.map_axes.kind == "time_frequency":
        if len(amap) != 2 or (rows and amap[0] not in (-1, rows)):
            raise BackendError(
                f"{source}: 'anomaly_map' has shape {[-1, *amap]}, expected [-1, {rows or 'F'}, -1] as the "
                "metadata's map axes say"
            )
    elif len(amap) != 1:
        raise BackendError(f"{source}: 'anomaly_map' has shape {[-1, *amap]}, expected a time track [-1, -1]")


def _describe(exc: BaseException) -> tuple[str, str]:
    """``(status code, one-line message)`` of a tritonclient exception (or any other)."""
    status = ""
    getter = getattr(exc, "status", None)
    if callable(getter):
        try:
            status = str(getter() or "")
        except Exception:  # a client exception without a status must not mask the real error
            status = ""
    status = status.rsplit(".", 1)[-1]
    text = ""
    message = getattr(exc, "message", None)
    if callable(message):
        try:
            text = str(message() or "")
        except Exception:
            text = ""
    text = (text or str(exc) or type(exc).__name__).strip().splitlines()[0]
    if status == "UNAVAILABLE" and "last error:" in text:  # gRPC's connect failure: keep the cause only
        text = text.rsplit(":", 1)[-1].strip() or text
    return status, text[:300]


class KServeV2Backend:
    """Scores batches of windows on a KServe v2 gRPC server; thread-safe (one gRPC channel, many calls).

    ``retry_after_s``: how long calls fail at once after the server was found unreachable (see the module
    docstring). ``connect_timeout_s`` bounds each of the start-up checks.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 5.0,
        retry_after_s: float = 1.0,
    ) -> None:
        self.target = parse_kserve_url(url)
        self.url = str(self.target)
        self.retry_after_s = float(retry_after_s)
        try:
            import tritonclient.grpc as grpcclient
        except ImportError:
            raise BackendError(
                f"{self.url}: the KServe v2 client is not installed ({_INSTALL_HINT})"
            ) from None
        self._grpc = grpcclient
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down_reason = ""
        self._closed = False
        self._client: Any = grpcclient.InferenceServerClient(
            self.target.address,
            channel_args=[
                ("grpc.max_send_message_length", 2**31 - 1),
                ("grpc.max_receive_message_length", 2**31 - 1),
                # reconnect within a second or two once a restarted server is back (gRPC's default backoff
                # grows to two minutes)
                ("grpc.initial_reconnect_backoff_ms", 250),
                ("grpc.min_reconnect_backoff_ms", 250),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ],
        )
        try:
            self.metadata, self.max_batch_size = self._connect(connect_timeout_s)
        except BaseException:
            self.close()
            raise

    # --- start-up checks ------------------------------------------------------------------------------------

    def _connect(self, timeout_s: float) -> tuple[BundleMetadata, int]:
        t, model, version = self.target, self.target.model, self.target.version
        try:
            live = self._client.is_server_live(client_timeout=timeout_s)
        except Exception as exc:
            status, text = _describe(exc)
            why = f"no answer within {timeout_s:g} s" if status == "DEADLINE_EXCEEDED" else text
            raise BackendError(f"{self.url}: no KServe v2 server answers at {t.address} ({why})") from None
        if not live:
            raise BackendError(f"{self.url}: the server at {t.address} answers but is not live")
        try:
            ready = self._client.is_model_ready(model, version, client_timeout=timeout_s)
        except Exception:  # the reason is looked up below
            ready = False
        if not ready:
            raise BackendError(self._not_ready_message(timeout_s))
        try:
            meta_json = self._client.get_model_metadata(
                model, version, as_json=True, client_timeout=timeout_s
            )
            config = self._client.get_model_config(model, version, as_json=True, client_timeout=timeout_s)
        except Exception as exc:
            raise BackendError(
                f"{self.url}: cannot read the model's metadata ({_describe(exc)[1]})"
            ) from None
        config = config.get("config", config)
        metadata = metadata_from_config(config, self.url)
        max_batch = int(config.get("max_batch_size", 0) or 0)
        check_signature(meta_json, metadata, self.url)
        return metadata, max_batch

    def _not_ready_message(self, timeout_s: float) -> str:
        """Why the model is not ready, as precisely as the server tells."""
        model, version = self.target.model, self.target.version
        try:  # Triton's repository extension lists every model with its state and the reason
            index = self._client.get_model_repository_index(as_json=True, client_timeout=timeout_s)
        except Exception:  # not offered by every KServe v2 server (pytriton restricts it)
            index = None
        if index is not None:
            models = index.get("models", [])
            entries = [m for m in models if m.get("name") == model]
            if not entries:
                names = sorted({m.get("name", "") for m in models if m.get("name")})
                return f"{self.url}: the server has no model {model!r} (it has: {', '.join(names) or 'none'})"
            e = entries[0]
            reason = f": {e['reason'].splitlines()[0][:200]}" if e.get("reason") else ""
            return f"{self.url}: model {model!r} is not ready (state {e.get('state', 'unknown')}{reason})"
        try:  # the plain KServe v2 way: metadata of an unknown model is an error that says so
            self._client.get_model_metadata(model, version, client_timeout=timeout_s)
        except Exception as exc:
            return f"{self.url}: model {model!r} is not available ({_describe(exc)[1]})"
        return f"{self.url}: model {model!r} is known to the server but not ready"

    # --- inference ------------------------------------------------------------------------------------------

    @property
    def device(self) -> str:
        """A short description for logs and benchmark reports."""
        return f"kserve {self.target.address}"

    def infer(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(audio, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise BackendError(f"{self.url}: infer expects float32 [batch, samples], got shape {x.shape}")
        if self._closed:
            raise BackendError(f"{self.url}: the backend is closed")
        with self._lock:
            wait = self._down_until - time.monotonic()
            reason = self._down_reason
        if wait > 0:
            raise BackendError(f"{self.url}: server unavailable ({reason}); next try in {wait:.1f} s")
        step = self.max_batch_size if self.max_batch_size > 0 else x.shape[0]
        parts = [self._infer_once(x[i : i + step]) for i in range(0, x.shape[0], step)]
        if len(parts) == 1:
            score, amap = parts[0]
        else:
            score = np.concatenate([p[0] for p in parts])
            amap = np.concatenate([p[1] for p in parts])
        return check_outputs(x.shape[0], score, amap, self.url)

    def _infer_once(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = self._grpc
        inp = g.InferInput(INPUT_NAME, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        outputs = [g.InferRequestedOutput(name) for name in OUTPUT_NAMES]
        try:
            result = self._client.infer(
                self.target.model,
                [inp],
                model_version=self.target.version,
                outputs=outputs,
                client_timeout=self.target.timeout_s,
            )
        except Exception as exc:
            status, text = _describe(exc)
            if status in _TRANSPORT_CODES:
                why = (
                    f"no answer within {self.target.timeout_s:g} s"
                    if status == "DEADLINE_EXCEEDED"
                    else "server unreachable"
                )
                with self._lock:
                    self._down_until = time.monotonic() + self.retry_after_s
                    self._down_reason = why
                raise BackendError(f"{self.url}: {why} ({text})") from None
            raise BackendError(f"{self.url}: inference failed ({status or 'error'}: {text})") from None
        score = result.as_numpy("score")
        amap = result.as_numpy("anomaly_map")
        if score is None or amap is None:
            raise BackendError(f"{self.url}: the server's answer lacks 'score' or 'anomaly_map'")
        return np.asarray(score, np.float32).reshape(-1), np.asarray(amap, np.float32)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        client = getattr(self, "_client", None)
        if client is not None:
            with contextlib.suppress(Exception):  # closing a channel to a dead server must not raise
                client.close()

    def __repr__(self) -> str:
        return f"KServeV2Backend({self.url!r})"


def metadata_json(metadata: BundleMetadata) -> str:
    """The compact metadata JSON a server publishes under the ``stream_guard`` config parameter."""
    return json.dumps(json.loads(metadata.to_json()), separators=(",", ":"), sort_keys=True)
