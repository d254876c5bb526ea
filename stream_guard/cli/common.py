"""Pieces every subcommand shares: exit codes, user errors, model options, consoles.

A *user error* (bad path, model file that is not a bundle, no microphone) is reported as one line on stderr
naming the file or device, never as a traceback; a bug still shows its traceback so it can be reported.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

EXIT_OK = 0
EXIT_INPUT_FAILED = 1  # the command ran, but at least one input (file, stream) failed
EXIT_USAGE = 2  # nothing useful could run: bad arguments, unusable model, missing device
EXIT_INTERRUPTED = 130

PROVIDERS = ("auto", "cpu", "cuda", "tensorrt")
MODEL_HELP = (
    "a bundle (.onnx), a fused pair (.fusion.json) or an embedded model: 'fused' (the default: one-class "
    "STFPM + supervised companion, fused; the map shown is the one-class model's), 'oneclass', 'supervised'"
)


class UserError(Exception):
    """An error caused by the user's input; ``main`` prints its message (naming the culprit) and exits."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def stderr_console() -> Any:
    """A rich console on stderr, so stdout stays clean for ``--jsonl -``."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """Print ``stream-guard: error: MESSAGE`` on stderr (plain text when stderr is not a terminal)."""
    from rich.markup import escape

    stderr_console().print(f"[bold red]stream-guard: error:[/] {escape(message)}", soft_wrap=True)


def print_warning(message: str) -> None:
    from rich.markup import escape

    stderr_console().print(f"[yellow]stream-guard: warning:[/] {escape(message)}", soft_wrap=True)


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def add_model_options(parser: argparse.ArgumentParser, *, hop: bool = True) -> None:
    """``--model``, ``--provider``, ``--threads`` (and ``--hop``): how to load and run the detector."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        metavar="MODEL",
        default=None,
        help=MODEL_HELP,
    )
    group.add_argument(
        "--provider",
        choices=PROVIDERS,
        default="auto",
        help="onnxruntime execution provider; 'auto' uses CUDA when a GPU is usable, else the CPU",
    )
    group.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="CPU threads per inference call (default: onnxruntime's choice)",
    )
    if hop:
        group.add_argument(
            "--hop",
            type=positive_float,
            default=None,
            metavar="SECONDS",
            help="time between consecutive windows (default: the bundle's recommended hop)",
        )


@dataclass(frozen=True)
class ModelChoice:
    """The model options of a parsed command line."""

    model: str | None
    provider: str
    threads: int | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ModelChoice:
        return cls(model=args.model, provider=args.provider, threads=args.threads)


def load_backend(choice: ModelChoice) -> Any:
    """Open the backend for the chosen bundle; bundle and provider problems become a :class:`UserError`."""
    from stream_guard.backends import BackendError
    from stream_guard.backends import load_backend as _load
    from stream_guard.bundle import BundleError

    try:
        return _load(choice.model, provider=choice.provider, threads=choice.threads)
    except BundleError as exc:
        if choice.model is None:
            raise UserError(
                f"{exc} (the embedded default model is missing or damaged in this installation; reinstall "
                "stream-guard or pass --model BUNDLE)"
            ) from None
        raise UserError(str(exc)) from None
    except BackendError as exc:
        raise UserError(str(exc)) from None


def cpu_count() -> int:
    """CPUs this process may use (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
