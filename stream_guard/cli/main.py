"""The ``stream-guard`` command: one module per subcommand, registered here.

Each subcommand lives in its own module under ``stream_guard.cli`` and exposes ``register(subparsers)``, which
adds its parser and sets ``handler`` (a callable taking the parsed namespace and returning an exit code).
Adding a subcommand is one new module plus one entry in :data:`SUBCOMMANDS`. Modules are imported lazily when
the parser is built and a module that does not exist yet is skipped, so a slot can be reserved before its
module lands (that is how ``calibrate`` and ``serve`` are listed).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from stream_guard import __version__
from stream_guard.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, UserError, print_error

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "stream_guard.cli.scan",
    "stream_guard.cli.listen",
    "stream_guard.cli.bench",
    "stream_guard.cli.info",
    "stream_guard.cli.calibrate",  # registration slot: the training side provides this module
    "stream_guard.cli.serve",  # registration slot: the network server provides this module
)

EPILOG = """\
examples:
  stream-guard scan call.wav                       summary table for one file
  stream-guard scan recordings/ --jsonl events.jsonl
  stream-guard scan call.wav --map-png call.png    spectrogram + anomaly overlay + score curve
  stream-guard listen --duration 30                score the default microphone for 30 s
  stream-guard bench --streams 100                 100 simulated real-time streams
  stream-guard info                                describe the default model (the fused pair)
  stream-guard scan call.wav --model oneclass      the one-class detector alone

Run `stream-guard COMMAND --help` for the options of each command.
"""


def _load(module_name: str) -> object | None:
    """Import a subcommand module; None when the module is a reserved slot that is not installed."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="stream-guard",
        description=(
            "Real-time monitor for synthetic speech: rolling scores, verdicts (real / synthetic / uncertain) "
            "and time-frequency anomaly maps for files, microphones and live streams."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stream-guard {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = _load(name)
        if module is not None:
            module.register(subparsers)  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stream-guard`` script; returns the process exit code.

    User errors (:class:`UserError`, e.g. a missing file or a model that is not a bundle) print one clear line
    and exit with their code; Ctrl-C exits with 130 after the subcommand had its chance to print a summary.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args) or 0)
    except UserError as exc:
        print_error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `stream-guard scan ... --jsonl - | head` closes the pipe early; that is not an error of ours.
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover - `python -m stream_guard.cli.main`
    sys.exit(main())
