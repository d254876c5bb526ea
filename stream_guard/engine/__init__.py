"""The asyncio engine: streams, the cross-stream micro-batching scheduler and its statistics."""

from stream_guard.engine.engine import Engine, scan_array
from stream_guard.engine.scheduler import EngineConfig, Scheduler
from stream_guard.engine.stream import Stream

__all__ = ["Engine", "EngineConfig", "Scheduler", "Stream", "scan_array"]
