"""stream-guard: a real-time monitor for synthetic speech.

The runtime is torch-free: numpy, onnxruntime and the I/O libraries only. ``import stream_guard`` stays cheap:
the public names below are imported on first use, so a CLI's ``--help`` or a sink never pays for onnxruntime.

```python
from stream_guard import Engine, AudioFormat

async with Engine.from_bundle(None) as engine:        # None = the default model (the embedded fused pair)
    stream = await engine.open_stream("call-1", AudioFormat(8000, "mulaw"))
    await stream.feed(payload)                         # any chunk size, any number of times
    summary = await stream.close()
```
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Engine": "stream_guard.engine",
    "EngineConfig": "stream_guard.engine",
    "Stream": "stream_guard.engine",
    "scan_array": "stream_guard.engine",
    "AudioFormat": "stream_guard.core",
    "AudioFormatError": "stream_guard.core",
    "StreamConfig": "stream_guard.core",
    "StreamClosedError": "stream_guard.core",
    "OnnxRuntimeBackend": "stream_guard.backends",
    "InferenceBackend": "stream_guard.backends",
    "BackendError": "stream_guard.backends",
    "load_backend": "stream_guard.backends",
    "BundleError": "stream_guard.bundle",
    "BundleMetadata": "stream_guard.bundle",
    "read_metadata": "stream_guard.bundle",
}

__all__ = [
    "AudioFormat",
    "AudioFormatError",
    "BackendError",
    "BundleError",
    "BundleMetadata",
    "Engine",
    "EngineConfig",
    "InferenceBackend",
    "OnnxRuntimeBackend",
    "Stream",
    "StreamClosedError",
    "StreamConfig",
    "__version__",
    "events",
    "load_backend",
    "read_metadata",
    "scan_array",
]

if TYPE_CHECKING:
    from stream_guard import events
    from stream_guard.backends import BackendError, InferenceBackend, OnnxRuntimeBackend, load_backend
    from stream_guard.bundle import BundleError, BundleMetadata, read_metadata
    from stream_guard.core import AudioFormat, AudioFormatError, StreamClosedError, StreamConfig
    from stream_guard.engine import Engine, EngineConfig, Stream, scan_array


def __getattr__(name: str) -> Any:
    if name == "events":
        return importlib.import_module("stream_guard.events")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stream_guard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
