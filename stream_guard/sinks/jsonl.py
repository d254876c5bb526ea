"""JSON lines sink: one event per line, flushed per line so a consumer can follow the file live."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from stream_guard.events import Event


class JsonlSink:
    """Writes events as JSON lines to a path, an open text stream, or stdout (``"-"``).

    The sink owns (and closes) a file it opened itself, never a stream it was handed.
    """

    def __init__(self, target: str | Path | TextIO) -> None:
        if isinstance(target, (str, Path)):
            if str(target) == "-":
                self._fh: TextIO = sys.stdout
                self._owned = False
            else:
                path = Path(target).expanduser()
                path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
                self._owned = True
        else:
            self._fh = target
            self._owned = False
        self.count = 0

    def write(self, event: Event) -> None:
        self._fh.write(event.to_json())
        self._fh.write("\n")
        self._fh.flush()
        self.count += 1

    def close(self) -> None:
        if self._owned and not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
