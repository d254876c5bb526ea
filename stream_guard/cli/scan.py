"""``stream-guard scan FILE|DIR...``: stream audio files through the engine and report on each.

Files are streams like any other: each is read in blocks and fed to an engine stream, so a file's scores are
the ones a live stream of the same audio would get. Several files stream concurrently (``--jobs``), which lets
the scheduler batch their windows into shared inference calls. A bad file (missing, empty, not audio, too
long, NaN samples) is reported in one line naming it, the others carry on, and the exit status is 1.

Output: a summary table (default), JSON lines events (``--jsonl``; the last event of each file is its summary,
or a fatal error event for a file that could not be opened), and optional anomaly-map pictures
(``--map-png``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream_guard.cli.common import (
    EXIT_INPUT_FAILED,
    EXIT_OK,
    ModelChoice,
    UserError,
    add_model_options,
    load_backend,
    positive_float,
    positive_int,
    print_error,
    stderr_console,
)
from stream_guard.events import ErrorEvent, Event, ScoreEvent, SummaryEvent
from stream_guard.sinks.jsonl import JsonlSink
from stream_guard.sinks.map_png import MapRecorder, render_map_png
from stream_guard.sinks.terminal import FileOutcome, scan_summary_table
from stream_guard.sources.files import (
    DEFAULT_MAX_DURATION_S,
    AudioFileInfo,
    FileSourceError,
    discover,
    probe,
    read_blocks,
    stream_blocks,
)

EPILOG = """\
examples:
  stream-guard scan call.wav                         summary table
  stream-guard scan calls/ --jobs 8                  every audio file under calls/, 8 at a time
  stream-guard scan call.wav --jsonl -               events as JSON lines on stdout
  stream-guard scan call.wav --map-png call.png      spectrogram + anomaly overlay + score curve
  stream-guard scan stereo.wav --per-channel         judge each channel as its own speaker
  stream-guard scan call.wav --realtime              feed at the speed of live audio

exit status: 0 all files scanned, 1 at least one file failed, 2 nothing could run (e.g. bad model).
"""

#: Beyond this duration the map picture is drawn without the spectrogram background (it would need the whole
#: file in memory).
MAX_SPECTROGRAM_S = 30 * 60.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="score audio files (summary table, JSON lines events, anomaly-map pictures)",
        description=(
            "Stream audio files through the detector as fast as possible (or in real time) and report a "
            "verdict per file. Any format libsndfile reads (WAV incl. mu-law/A-law, FLAC, Ogg/Opus, MP3, "
            "...), any sample rate and channel count."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="FILE|DIR", help="audio files, or directories to search")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--jsonl",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH|-",
        help="write every event as a JSON line to PATH, or stdout with '-' or no value",
    )
    out.add_argument(
        "--map-png",
        default=None,
        metavar="PATH",
        help="draw the anomaly map: PATH.png for one file; for several files, one PNG per file in the "
        "directory PATH (or next to PATH, suffixed with the file's name)",
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument(
        "--quiet", "-q", action="store_true", help="no summary table (errors still go to stderr)"
    )
    run_group = parser.add_argument_group("streaming")
    run_group.add_argument(
        "--realtime",
        action="store_true",
        help="pace each file at the speed of live audio instead of max speed",
    )
    run_group.add_argument(
        "--per-channel",
        action="store_true",
        help="score each channel of a multi-channel file as its own speaker (default: mix to mono)",
    )
    run_group.add_argument(
        "--jobs", type=positive_int, default=4, metavar="N", help="files streamed concurrently (default: 4)"
    )
    run_group.add_argument(
        "--block",
        type=positive_float,
        default=0.5,
        metavar="SECONDS",
        help="audio fed per chunk (default: 0.5; results do not depend on it)",
    )
    run_group.add_argument(
        "--max-duration",
        type=positive_float,
        default=DEFAULT_MAX_DURATION_S,
        metavar="SECONDS",
        help=f"refuse files longer than this (default: {DEFAULT_MAX_DURATION_S:.0f} s)",
    )
    add_model_options(parser)
    parser.set_defaults(handler=run)


@dataclass
class _FileJob:
    """Per-file bookkeeping while it streams."""

    info: AudioFileInfo
    name: str
    outcome: FileOutcome
    progress_s: float = 0.0
    maps: dict[str, MapRecorder] = field(default_factory=dict)
    channel_summaries: list[SummaryEvent] = field(default_factory=list)


def map_png_targets(base: str, names: list[Path]) -> dict[Path, Path]:
    """Where each file's picture goes (see ``--map-png`` help)."""
    target = Path(base).expanduser()
    if len(names) == 1 and target.suffix.lower() == ".png":
        return {names[0]: target}
    out: dict[Path, Path] = {}
    used: set[str] = set()
    for path in names:
        stem = path.stem
        k = 1
        while stem in used:  # two files with the same name in different folders
            k += 1
            stem = f"{path.stem}-{k}"
        used.add(stem)
        if target.suffix.lower() == ".png":
            out[path] = target.with_name(f"{target.stem}-{stem}.png")
        else:
            out[path] = target / f"{stem}.png"
    return out


class _Scanner:
    """Runs the scan: one engine, files streamed concurrently, events routed to the sinks."""

    def __init__(
        self, args: argparse.Namespace, backend: Any, jsonl: JsonlSink | None, progress: Any
    ) -> None:
        self.args = args
        self.backend = backend
        self.meta = backend.metadata
        self.jsonl = jsonl
        self.progress = progress
        self.task_id = None

    def _stream_config(self) -> Any:
        from stream_guard.core import StreamConfig

        # Files are not live: under load `feed` waits for the scheduler instead of dropping windows, unless
        # the user asked for real-time pacing, where a live stream's behaviour is the point.
        return StreamConfig(
            hop_s=self.args.hop,
            split_channels=self.args.per_channel,
            realtime=bool(self.args.realtime),
            emit_map=True,
        )

    def _emit(self, job: _FileJob, event: Event) -> None:
        if self.jsonl is not None:
            self.jsonl.write(event)
        if self.args.map_png is not None and event.type in ("map", "score"):
            job.maps.setdefault(event.stream, MapRecorder()).write(event)
        if isinstance(event, ScoreEvent):
            advance = max(0.0, min(event.end_s, job.info.duration_s) - job.progress_s)
            if advance > 0 and self.progress is not None:
                job.progress_s += advance
                self.progress.advance(self.task_id, advance)
        elif isinstance(event, ErrorEvent) and event.code == "invalid_audio" and job.outcome.error is None:
            job.outcome.error = f"{job.name}: {event.message}"
        elif isinstance(event, SummaryEvent):
            if event.stream == job.name:
                job.outcome.summary = event
            else:
                job.channel_summaries.append(event)

    async def scan_file(self, engine: Any, job: _FileJob) -> None:
        from stream_guard.core import AudioFormat, AudioFormatError

        fmt = AudioFormat(job.info.sample_rate, "float32", job.info.channels)
        try:
            stream = await engine.open_stream(job.name, fmt, self._stream_config())
        except (AudioFormatError, ValueError) as exc:
            self._fail(job, str(exc))
            return

        async def pump() -> None:
            async for event in stream.events():
                self._emit(job, event)

        consumer = asyncio.create_task(pump())
        try:
            async for block in stream_blocks(job.info, block_s=self.args.block, realtime=self.args.realtime):
                if not await stream.feed(block):
                    break  # rejected audio: the stream's error event says why and marks the file failed
        except (FileSourceError, AudioFormatError) as exc:
            message = str(exc)
            if not message.startswith(job.name):
                message = f"{job.name}: {message}"
            job.outcome.error = message
            self._emit(job, ErrorEvent(job.name, code="bad_input", message=message, fatal=True))
        finally:
            summary = await stream.close()
            await consumer
        if job.outcome.summary is None and isinstance(summary, SummaryEvent):
            job.outcome.summary = summary
        if job.outcome.error is not None:
            job.outcome.summary = None  # a file that failed midway is reported as failed, with its reason
        if self.progress is not None:
            self.progress.advance(self.task_id, max(0.0, job.info.duration_s - job.progress_s))

    def _fail(self, job: _FileJob, message: str) -> None:
        job.outcome.error = message
        if self.jsonl is not None:
            self.jsonl.write(ErrorEvent(job.name, code="bad_input", message=message, fatal=True))

    async def run(self, jobs: list[_FileJob]) -> None:
        from stream_guard.engine import Engine, EngineConfig

        engine = Engine(self.backend, EngineConfig())
        limit = asyncio.Semaphore(self.args.jobs)

        async def one(job: _FileJob) -> None:
            async with limit:
                await self.scan_file(engine, job)

        async with engine:
            await asyncio.gather(*(one(job) for job in jobs))


def _read_mono(info: AudioFileInfo) -> np.ndarray | None:
    """The whole file as mono float32 for the picture's spectrogram, or None when it is too long to hold."""
    if info.duration_s > MAX_SPECTROGRAM_S:
        return None
    blocks = [b.mean(axis=1) for b in read_blocks(info, 1 << 16)]
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def _render_maps(jobs: list[_FileJob], base: str, threshold_probability: float, model: str) -> list[str]:
    """Draw one picture per scanned file (per channel with --per-channel); returns the paths written."""
    targets = map_png_targets(base, [job.info.path for job in jobs])
    written = []
    for job in jobs:
        if job.outcome.summary is None or not job.maps:
            continue
        target = targets[job.info.path]
        try:
            audio = _read_mono(job.info)
        except FileSourceError:  # the file changed since it was scanned: draw the map without it
            audio = None
        for stream_id, recorder in sorted(job.maps.items()):
            path = target
            if stream_id != job.name:  # a channel of a --per-channel scan
                label = stream_id[len(job.name) + 1 :]
                path = target.with_name(f"{target.stem}-ch{label}.png")
            summary = job.outcome.summary
            probability = "-" if summary.probability is None else format(summary.probability, ".2f")
            title = (
                f"{stream_id}   verdict: {summary.verdict}   P(synthetic): {probability} "
                f"(threshold {threshold_probability:.2f})   model: {model}"
            )
            try:
                written.append(
                    str(
                        render_map_png(
                            path, recorder, audio, job.info.sample_rate, title, threshold_probability
                        )
                    )
                )
            except OSError as exc:
                raise UserError(f"{path}: cannot write the picture ({exc.strerror or exc})") from None
    return written


def run(args: argparse.Namespace) -> int:
    console = stderr_console()
    files, errors = discover(args.paths)
    outcomes: list[FileOutcome] = []
    jobs: list[_FileJob] = []
    for err in errors:
        outcomes.append(FileOutcome(err.path, error=str(err)))
    for path in files:
        try:
            info = probe(path, args.max_duration)
        except FileSourceError as exc:
            outcomes.append(FileOutcome(str(path), error=str(exc)))
            continue
        outcome = FileOutcome(str(path), duration_s=info.duration_s)
        outcomes.append(outcome)
        jobs.append(_FileJob(info=info, name=str(path), outcome=outcome))

    backend = load_backend(ModelChoice.from_args(args))
    meta = backend.metadata
    jsonl = None
    if args.jsonl is not None:
        try:
            jsonl = JsonlSink(args.jsonl)
        except OSError as exc:
            backend.close()
            raise UserError(f"{args.jsonl}: cannot write ({exc.strerror or exc})") from None
    for outcome in outcomes:  # files that could not even be opened
        if outcome.error is not None and jsonl is not None:
            jsonl.write(ErrorEvent(outcome.name, code="bad_input", message=outcome.error, fatal=True))

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    show_progress = not args.no_progress and console.is_terminal and bool(jobs)
    progress = (
        Progress(
            TextColumn("scanning"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} s of audio"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        if show_progress
        else None
    )
    scanner = _Scanner(args, backend, jsonl, progress)
    try:
        if progress is not None:
            with progress:
                scanner.task_id = progress.add_task("scan", total=sum(j.info.duration_s for j in jobs))
                asyncio.run(scanner.run(jobs))
        elif jobs:
            asyncio.run(scanner.run(jobs))
    finally:
        if jsonl is not None:
            jsonl.close()
        backend.close()

    for outcome in outcomes:
        if outcome.error is not None:
            print_error(outcome.error)

    if args.map_png is not None:
        threshold_p = meta.calibration.threshold_probability
        for path in _render_maps(jobs, args.map_png, threshold_p, meta.name):
            console.print(f"anomaly map written to {path}", soft_wrap=True)

    if not args.quiet:
        from rich.console import Console

        table_console = console if args.jsonl == "-" else Console(highlight=False)
        if not table_console.is_terminal:  # a pipe or a file: do not squeeze paths into 80 columns
            table_console.width = max(table_console.width, 160)
        table_console.print(scan_summary_table(outcomes, meta.name, compact=table_console.width < 110))
        for job in jobs:
            for part in sorted(job.channel_summaries, key=lambda s: s.stream):
                table_console.print(
                    f"  {part.stream}: {part.verdict}"
                    + (
                        ""
                        if part.probability is None
                        else f", P(synthetic) {part.probability:.3f} "
                        f"(threshold {meta.calibration.threshold_probability:.3f})"
                    ),
                    soft_wrap=True,
                )
    failed = sum(1 for o in outcomes if o.summary is None)
    return EXIT_INPUT_FAILED if failed else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    from stream_guard.cli.main import main

    sys.exit(main(["scan", *sys.argv[1:]]))
