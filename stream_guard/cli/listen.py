"""``stream-guard listen``: score a microphone live, with a rolling view in the terminal.

The microphone is one engine stream fed from PortAudio's callback (through a bounded queue); the view is
redrawn a few times a second from the events. ``--duration`` ends the session after that much audio (for
scripts and tests); Ctrl-C ends it cleanly too, and both print the stream's summary. ``--jsonl`` writes the
events as they come, the summary last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

from stream_guard.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    ModelChoice,
    UserError,
    add_model_options,
    load_backend,
    positive_float,
    stderr_console,
)
from stream_guard.events import SummaryEvent
from stream_guard.sinks.jsonl import JsonlSink
from stream_guard.sinks.terminal import FileOutcome, LiveView, scan_summary_table
from stream_guard.sources.microphone import MicrophoneError, MicrophoneSource, list_input_devices

EPILOG = """\
examples:
  stream-guard listen                              default microphone until Ctrl-C
  stream-guard listen --list-devices               what PortAudio can record from
  stream-guard listen --device 3 --duration 60     device 3 for one minute
  stream-guard listen --duration 10 --jsonl -      scripted: events on stdout, no live view

exit status: 0 normal end (duration reached or Ctrl-C), 2 no microphone / PortAudio missing / bad model.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "listen",
        help="score a microphone live (rolling score, verdict, alert state, anomaly strip)",
        description="Score live audio from a microphone, with a rolling view in the terminal.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--device",
        default=None,
        metavar="ID|NAME",
        help="input device index or name (default: system default)",
    )
    parser.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="stop after this much recorded audio (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--sample-rate",
        type=int,
        default=None,
        metavar="HZ",
        help="recording rate (default: the model's rate if the device supports it, else the device's own)",
    )
    parser.add_argument(
        "--channels", type=int, default=1, metavar="N", help="channels to record (default: 1)"
    )
    parser.add_argument(
        "--per-channel", action="store_true", help="with --channels 2+, judge each channel as its own speaker"
    )
    parser.add_argument(
        "--jsonl",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH|-",
        help="write events as JSON lines to PATH or stdout ('-'); with stdout the live view is off",
    )
    parser.add_argument("--no-view", action="store_true", help="no live view (summary only)")
    add_model_options(parser)
    parser.set_defaults(handler=run)


def print_devices() -> int:
    from rich.console import Console
    from rich.table import Table

    try:
        devices = list_input_devices()
    except MicrophoneError as exc:
        raise UserError(str(exc)) from None
    console = Console(highlight=False)
    if not devices:
        console.print("no audio input devices found")
        return EXIT_USAGE
    table = Table(title="audio input devices", title_justify="left")
    for col in ("id", "name", "host API", "channels", "default rate", ""):
        table.add_column(col)
    for dev in devices:
        table.add_row(
            str(dev.index),
            dev.name,
            dev.host_api,
            str(dev.channels),
            f"{dev.default_sample_rate:.0f} Hz",
            "default" if dev.is_default else "",
        )
    console.print(table)
    return EXIT_OK


async def _session(
    args: argparse.Namespace, backend: Any, view: LiveView, jsonl: JsonlSink | None, live: Any
) -> tuple[SummaryEvent | None, MicrophoneSource]:
    from stream_guard.core import AudioFormat, StreamConfig
    from stream_guard.engine import Engine, EngineConfig

    meta = backend.metadata
    source = MicrophoneSource(
        device=args.device,
        sample_rate=args.sample_rate or meta.sample_rate,
        channels=args.channels,
        block_s=0.05,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows / not the main thread
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    summary: SummaryEvent | None = None
    async with Engine(backend, EngineConfig()) as engine:
        await source.start()
        try:
            view.source = source.device_name or view.source
            fmt = AudioFormat(source.sample_rate, "float32", source.channels)
            config = StreamConfig(hop_s=args.hop, split_channels=args.per_channel, realtime=True)
            stream = await engine.open_stream(f"mic:{source.device_name}", fmt, config)

            async def pump() -> None:
                async for event in stream.events():
                    view.write(event)
                    if jsonl is not None:
                        jsonl.write(event)
                    if live is not None:
                        live.update(view.render())

            consumer = asyncio.create_task(pump())
            recorded = 0
            limit = None if args.duration is None else int(round(args.duration * source.sample_rate))
            async for block in _until(source, stop):
                if limit is not None:
                    block = block[: limit - recorded]
                await stream.feed(block)
                recorded += block.shape[0]
                if limit is not None and recorded >= limit:
                    break
            await source.stop()
            view.status = "finishing the last windows..."
            if live is not None:
                live.update(view.render())
            summary = await stream.close()
            await consumer
        finally:
            await source.stop()
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
                loop.remove_signal_handler(signal.SIGTERM)
    return summary, source


async def _until(source: MicrophoneSource, stop: asyncio.Event):  # type: ignore[no-untyped-def]
    """The source's blocks until ``stop`` is set (Ctrl-C)."""
    it = source.__aiter__()
    while not stop.is_set():
        next_block = asyncio.ensure_future(it.__anext__())
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({next_block, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if next_block in done:
            try:
                yield next_block.result()
            except StopAsyncIteration:
                return
        else:
            next_block.cancel()
            return


def run(args: argparse.Namespace) -> int:
    if args.list_devices:
        return print_devices()
    if args.channels < 1:
        raise UserError(f"--channels must be at least 1, got {args.channels}")
    backend = load_backend(ModelChoice.from_args(args))
    console = stderr_console()
    jsonl = JsonlSink(args.jsonl) if args.jsonl is not None else None
    from stream_guard.core import StreamConfig

    defaults = StreamConfig()
    view = LiveView(
        source=str(args.device or "default microphone"),
        model=backend.metadata.name,
        threshold_probability=backend.metadata.calibration.threshold_probability,
        alert_on=defaults.alert_on,
        alert_off=defaults.alert_off,
    )
    show_view = not args.no_view and args.jsonl != "-" and console.is_terminal
    interrupted = False
    try:
        if show_view:
            from rich.live import Live

            with Live(view.render(), console=console, refresh_per_second=8, transient=False) as live:
                summary, source = asyncio.run(_session(args, backend, view, jsonl, live))
        else:
            summary, source = asyncio.run(_session(args, backend, view, jsonl, None))
    except MicrophoneError as exc:
        raise UserError(str(exc)) from None
    except KeyboardInterrupt:
        interrupted = True
        summary, source = None, None
    finally:
        if jsonl is not None:
            jsonl.close()
        backend.close()
    if summary is not None:
        from rich.console import Console

        outcome = FileOutcome(summary.stream, summary=summary, duration_s=summary.duration_s)
        out = console if args.jsonl == "-" else Console(highlight=False)  # stdout stays JSON with --jsonl -
        if not out.is_terminal:
            out.width = max(out.width, 160)
        out.print(
            scan_summary_table([outcome], backend.metadata.name, command="listen", compact=out.width < 110)
        )
    if source is not None and (source.dropped_blocks or source.overflows):
        console.print(
            f"[yellow]audio lost: {source.dropped_blocks} blocks dropped (slow consumer), "
            f"{source.overflows} device overflows[/]"
        )
    return EXIT_INTERRUPTED if interrupted else EXIT_OK
