"""Human views on a terminal (rich): the scan summary table and the live ``listen`` view.

Both are sinks: they are fed events and render; they never touch audio or the engine. The live view keeps a
bounded history (the last ``history`` scores and map columns), so an all-day session uses constant memory.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from stream_guard.events import AlertEvent, ErrorEvent, Event, MapEvent, ScoreEvent, SummaryEvent

VERDICT_STYLE = {"real": "bold green", "synthetic": "bold red", "uncertain": "bold yellow"}
_SPARK = " ▁▂▃▄▅▆▇█"
_STRIP_STYLES = ("grey15", "grey35", "dark_orange3", "orange1", "red1", "bright_red")


def verdict_text(verdict: str) -> Text:
    return Text(verdict, style=VERDICT_STYLE.get(verdict, "bold"))


def _fmt(value: float | None, spec: str = ".3f") -> str:
    """A table cell: "-" for no number (None, or NaN: a window that abstained without inference)."""
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


@dataclass
class FileOutcome:
    """One row of the scan summary: a file's summary event, or the error that stopped it."""

    name: str
    summary: SummaryEvent | None = None
    error: str | None = None
    duration_s: float = 0.0


def scan_summary_table(
    outcomes: Sequence[FileOutcome], model: str, command: str = "scan", compact: bool = False
) -> Table:
    """The table `scan` (and `listen`) prints at the end: one row per stream, failures with their reason.

    ``compact`` (for terminals narrower than about 110 columns) leaves out the raw score columns, so that the
    verdict and probability never wrap; the file and notes columns fold instead. The caption states the
    threshold the probabilities are compared with, so a real verdict next to P(synth) 0.6 reads as what it
    is (below a 0.65 threshold) rather than as a contradiction.
    """
    threshold_p = next(
        (o.summary.threshold_probability for o in outcomes if o.summary and o.summary.threshold_probability),
        None,
    )
    caption = (
        None
        if threshold_p is None
        else f"verdict: synthetic when P(synth) >= {threshold_p:.2f}, the model's threshold "
        "(an operating point on real speech, not 0.5); real below it"
    )
    table = Table(
        title=f"stream-guard {command}  (model: {model})",
        title_justify="left",
        caption=caption,
        caption_justify="left",
        expand=False,
    )
    table.add_column("file" if command == "scan" else "stream", overflow="fold", ratio=3, min_width=12)
    table.add_column("verdict", no_wrap=True)
    table.add_column("P(synth)", justify="right", no_wrap=True)
    if not compact:
        table.add_column("score", justify="right", no_wrap=True)
        table.add_column("max", justify="right", no_wrap=True)
    table.add_column("synth.", justify="right", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("notes", overflow="fold", ratio=2, min_width=10)
    blanks = ["", "", ""] if compact else ["", "", "", "", ""]
    for item in outcomes:
        if item.summary is None:
            reason = item.error or ""
            if reason.startswith(f"{item.name}: "):  # the row already names the file
                reason = reason[len(item.name) + 2 :]
            table.add_row(
                item.name, Text("failed", style="bold magenta"), *blanks, Text(reason, style="magenta")
            )
            continue
        s = item.summary
        notes = ", ".join(s.reasons)
        if s.windows_dropped:
            notes = ", ".join(filter(None, [notes, f"{s.windows_dropped} windows dropped"]))
        if s.alerts:
            notes = ", ".join(filter(None, [notes, f"{s.alerts} alert(s)"]))
        scores = [] if compact else [_fmt(s.score), _fmt(s.max_score)]
        table.add_row(
            item.name,
            verdict_text(s.verdict),
            _fmt(s.probability),
            *scores,
            f"{100.0 * s.synthetic_fraction:.0f}% of {s.windows}",
            f"{s.duration_s:.1f} s",
            notes,
        )
    return table


def sparkline(values: Sequence[float], width: int) -> str:
    """Values in [0, 1] as a one-line bar chart of the last ``width`` values."""
    tail = list(values)[-width:]
    # NaN (a window skipped before any judged one: no probability yet) is drawn as a gap
    top = len(_SPARK) - 1
    chars = [_SPARK[min(top, max(0, int(round(v * top))))] if v == v else " " for v in tail]
    return "".join(chars).rjust(width)


@dataclass
class LiveView:
    """State of the live ``listen`` screen, updated from events; :meth:`render` draws it.

    The anomaly strip shows the newest map columns pooled into ``strip_rows`` frequency bands (low frequencies
    at the bottom), each cell coloured by where it lies in the recent 1st-99th percentile range of the map.
    """

    source: str
    model: str
    threshold_probability: float = 0.5
    alert_on: float = 0.8
    alert_off: float = 0.5
    history: int = 60
    strip_rows: int = 6
    strip_width: int = 60
    probabilities: deque[float] = field(default_factory=lambda: deque(maxlen=240))
    strip: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=240))
    verdict: str = "uncertain"
    reasons: list[str] = field(default_factory=list)
    alert_raised: bool = False
    alerts: int = 0
    last_probability: float | None = None
    last_smoothed: float | None = None
    last_latency_ms: float | None = None
    stream_time_s: float = 0.0
    windows: int = 0
    errors: list[str] = field(default_factory=list)
    status: str = ""
    _lo: float | None = None
    _hi: float | None = None

    def write(self, event: Event) -> None:
        if isinstance(event, ScoreEvent):
            self.windows += 1
            self.probabilities.append(event.smoothed)
            self.last_probability = event.probability
            self.last_smoothed = event.smoothed
            self.last_latency_ms = event.latency_ms
            self.verdict = event.verdict
            self.reasons = list(event.reasons)
            self.stream_time_s = max(self.stream_time_s, event.end_s)
        elif isinstance(event, MapEvent) and event.columns:
            cols = np.asarray(event.columns, dtype=np.float32)
            if cols.ndim == 1:
                cols = cols[None, :]
            bands = np.array_split(np.arange(cols.shape[0]), min(self.strip_rows, cols.shape[0]))
            pooled = np.nan_to_num(np.stack([cols[b].mean(axis=0) for b in bands]), nan=0.0)  # [rows, n_new]
            lo, hi = (float(v) for v in np.percentile(pooled, [1, 99]))
            if self._lo is None or self._hi is None:
                self._lo, self._hi = lo, hi
            else:  # a slowly forgetting range, so one loud moment does not blank the strip for ever
                self._lo = min(lo, self._lo + 0.01 * (hi - self._lo))
                self._hi = max(hi, self._hi - 0.01 * (self._hi - lo))
            for j in range(pooled.shape[1]):
                self.strip.append(pooled[:, j])
        elif isinstance(event, AlertEvent):
            self.alert_raised = event.state == "raised"
            if self.alert_raised:
                self.alerts += 1
        elif isinstance(event, ErrorEvent):
            self.errors.append(event.message)
        elif isinstance(event, SummaryEvent):
            self.verdict = event.verdict

    def _strip(self) -> Text:
        text = Text()
        cols = list(self.strip)[-self.strip_width :]
        if not cols:
            return Text("(waiting for the first window)", style="dim")
        rows = len(cols[0])
        for r in reversed(range(rows)):
            for col in cols:
                span = (self._hi or 0.0) - (self._lo or 0.0)
                level = (float(col[r]) - (self._lo or 0.0)) / span if span > 1e-12 else 0.0
                idx = min(len(_STRIP_STYLES) - 1, max(0, int(level * (len(_STRIP_STYLES) - 1))))
                text.append("█", style=_STRIP_STYLES[idx])
            text.append("\n")
        text.rstrip()
        return text

    def render(self) -> RenderableType:
        head = Table.grid(padding=(0, 2))
        head.add_row(
            Text("verdict ", style="bold") + verdict_text(self.verdict),
            # the live verdict follows the smoothed probability, so that is the number shown beside it
            Text("smoothed P(synthetic) ", style="bold")
            + Text(_fmt(self.last_smoothed, ".2f"))
            + Text(f"  (window {_fmt(self.last_probability, '.2f')})", style="dim"),
            Text("alert ", style="bold")
            + (
                Text("RAISED", style="bold white on red")
                if self.alert_raised
                else Text("clear", style="green")
            ),
            Text(
                f"{self.stream_time_s:7.1f} s  {self.windows} windows  "
                f"latency {_fmt(self.last_latency_ms, '.0f')} ms",
                style="dim",
            ),
        )
        spark = Text(sparkline(self.probabilities, self.history), style="red")
        rule = (
            f"real below {self.alert_off:.2f}, alert at {self.alert_on:.2f} or above, uncertain between; "
            f"the model's threshold for a whole recording is {self.threshold_probability:.2f}"
        )
        parts: list[RenderableType] = [
            head,
            Text(rule, style="dim"),
            Text("smoothed P(synthetic), newest right:", style="dim"),
            spark,
            Text("anomaly strip (high frequencies on top):", style="dim"),
            self._strip(),
        ]
        if self.reasons:
            parts.append(Text("abstaining: " + ", ".join(self.reasons), style="yellow"))
        if self.errors:
            parts.append(Text(self.errors[-1], style="magenta"))
        if self.status:
            parts.append(Text(self.status, style="dim"))
        return Panel(
            Group(*parts),
            title=f"stream-guard listen: {self.source}",
            subtitle=f"model {self.model}",
            title_align="left",
        )
