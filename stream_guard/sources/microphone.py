"""Microphone input through PortAudio (sounddevice), as an async iterator of float32 blocks.

PortAudio calls back on its own thread; each block is handed to the event loop through a bounded queue. If the
consumer falls behind, the oldest block is dropped and counted (never an unbounded buffer), like every queue
in stream-guard. The two ways a machine can lack audio input both become :class:`MicrophoneError` with a
message a user can act on: PortAudio itself missing (sounddevice raises OSError at import) and no input device
(PortAudio's "Error querying device -1").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np


class MicrophoneError(Exception):
    """No usable audio input: PortAudio missing, no device, or a device that refuses the requested format."""


def import_sounddevice() -> Any:
    """Import sounddevice, turning a missing PortAudio library into a clear MicrophoneError."""
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError("PortAudio library not found") at import
        raise MicrophoneError(
            f"the PortAudio library is not installed ({exc}); install it (Debian/Ubuntu: "
            "`apt-get install libportaudio2`, macOS: `brew install portaudio`) to use a microphone"
        ) from None
    return sounddevice


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    host_api: str
    channels: int
    default_sample_rate: float
    is_default: bool


def list_input_devices() -> list[InputDevice]:
    """Every device with at least one input channel, as PortAudio sees them at import time."""
    sd = import_sounddevice()
    try:
        devices = sd.query_devices()
        apis = sd.query_hostapis()
        default_in = sd.default.device[0]
    except sd.PortAudioError as exc:
        raise MicrophoneError(f"cannot list audio devices ({exc})") from None
    found = []
    for index, dev in enumerate(devices):
        if dev["max_input_channels"] > 0:
            found.append(
                InputDevice(
                    index=index,
                    name=str(dev["name"]),
                    host_api=str(apis[dev["hostapi"]]["name"]),
                    channels=int(dev["max_input_channels"]),
                    default_sample_rate=float(dev["default_samplerate"]),
                    is_default=index == default_in,
                )
            )
    return found


def _device_arg(device: str | int | None) -> str | int | None:
    if isinstance(device, str) and device.strip().isdigit():
        return int(device)
    return device


class MicrophoneSource:
    """An open input stream; ``async for block in source`` yields float32 ``[frames, channels]`` arrays.

    ``sample_rate`` None uses the device's default rate (the stream core resamples). ``queue_blocks`` bounds
    the hand-over queue; ``dropped_blocks`` counts what was discarded because the consumer was too slow, and
    ``overflows`` what PortAudio itself reported lost.
    """

    def __init__(
        self,
        device: str | int | None = None,
        sample_rate: int | None = None,
        channels: int = 1,
        block_s: float = 0.1,
        queue_blocks: int = 50,
    ) -> None:
        self.device = _device_arg(device)
        self.requested_rate = sample_rate
        self.channels = channels
        self.block_s = block_s
        self.queue_blocks = queue_blocks
        self.sample_rate = 0
        self.device_name = ""
        self.dropped_blocks = 0
        self.overflows = 0
        self._stream: Any = None
        self._queue: asyncio.Queue[np.ndarray] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _resolve(self, sd: Any) -> tuple[dict[str, Any], int]:
        try:
            info = sd.query_devices(self.device, kind="input")
        except (sd.PortAudioError, ValueError) as exc:
            text = str(exc)
            if "-1" in text or self.device is None:
                raise MicrophoneError(
                    "no audio input device found (PortAudio: "
                    f"{text}); connect a microphone, or pick one with --device (see --list-devices)"
                ) from None
            raise MicrophoneError(f"audio device {self.device!r}: {text} (see --list-devices)") from None
        rate = self.requested_rate or int(info["default_samplerate"])
        try:
            sd.check_input_settings(
                device=self.device, channels=self.channels, samplerate=rate, dtype="float32"
            )
        except (sd.PortAudioError, ValueError):
            rate = int(info["default_samplerate"])  # the device refuses the model's rate: take its own
        return info, rate

    def _callback(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status and status.input_overflow:
            self.overflows += 1
        block = indata.copy()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._put, block)

    def _put(self, block: np.ndarray) -> None:
        assert self._queue is not None
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped_blocks += 1
        self._queue.put_nowait(block)

    async def start(self) -> MicrophoneSource:
        sd = import_sounddevice()
        info, rate = self._resolve(sd)
        self.sample_rate = rate
        self.device_name = str(info["name"])
        self.channels = min(self.channels, int(info["max_input_channels"])) or 1
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=self.queue_blocks)
        try:
            self._stream = sd.InputStream(
                device=self.device,
                samplerate=rate,
                channels=self.channels,
                dtype="float32",
                blocksize=max(1, int(round(self.block_s * rate))),
                callback=self._callback,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise MicrophoneError(
                f"audio device {self.device_name!r}: cannot start recording ({exc})"
            ) from None
        return self

    async def stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()

    async def __aenter__(self) -> MicrophoneSource:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __aiter__(self) -> AsyncIterator[np.ndarray]:
        return self._blocks()

    async def _blocks(self) -> AsyncIterator[np.ndarray]:
        if self._queue is None:
            raise RuntimeError("MicrophoneSource.start() was not called")
        while self._stream is not None or not self._queue.empty():
            try:
                yield await asyncio.wait_for(self._queue.get(), timeout=1.0)
            except asyncio.TimeoutError:
                continue
