"""The sans-I/O core: decoding, resampling, windowing, quality checks, verdicts and map stitching.

Nothing here does I/O or uses asyncio; every class is fed bytes or arrays and returns windows or events.
"""

from stream_guard.core.formats import AudioFormat, AudioFormatError, Decoder, decode, encode
from stream_guard.core.quality import QualityConfig
from stream_guard.core.stream import (
    StreamClosedError,
    StreamConfig,
    StreamState,
    Window,
    combine_summaries,
    make_stream_states,
)

__all__ = [
    "AudioFormat",
    "AudioFormatError",
    "Decoder",
    "QualityConfig",
    "StreamClosedError",
    "StreamConfig",
    "StreamState",
    "Window",
    "combine_summaries",
    "decode",
    "encode",
    "make_stream_states",
]
