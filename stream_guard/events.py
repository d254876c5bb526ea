"""Versioned events: what stream-guard tells the world about each stream.

Every event is a small dataclass with a ``type`` and serialises to one JSON object (``to_dict`` / ``to_json``)
carrying ``"v": EVENT_VERSION``. The JSON Schema that integrators validate against ships in the package
(``stream_guard/schemas/events.schema.json``); ``tests/test_events_schema.py`` keeps the two in step.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

EVENT_VERSION = 1

Verdict = Literal["real", "synthetic", "uncertain"]
AbstainReason = Literal["no_speech", "too_short", "clipped", "low_quality", "warming_up"]


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class Event:
    """Base of all events. ``stream`` is the stream id; ``t`` the stream time (s) the event refers to."""

    stream: str

    type: str = field(init=False, default="event")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["type"] = self.type
        data["v"] = EVENT_VERSION
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)


@dataclass
class ScoreEvent(Event):
    """One scored window.

    ``score`` is the model's raw score, ``probability`` its calibrated probability of being synthetic,
    ``smoothed`` the stream's smoothed probability that drives the live verdict: ``real`` below the stream's
    ``alert_off`` (0.5 by default), ``synthetic`` while an alert is raised (smoothed >= ``alert_on``, 0.8 by
    default, for ``alert_windows`` windows), ``uncertain`` in between. ``low_confidence`` marks windows
    shorter than the bundle's window (the first scores of a stream). ``latency_ms`` runs from the moment the
    window's last sample was accepted to the moment its score was ready.
    """

    window_index: int = 0
    start_s: float = 0.0
    end_s: float = 0.0
    score: float = 0.0
    probability: float = 0.0
    smoothed: float = 0.0
    verdict: Verdict = "uncertain"
    reasons: list[str] = field(default_factory=list)
    low_confidence: bool = False
    latency_ms: float = 0.0
    model: str = ""

    type: str = field(init=False, default="score")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        for key in ("score", "probability", "smoothed", "latency_ms"):
            data[key] = _finite(data[key])
        return data


@dataclass
class MapEvent(Event):
    """New columns of the stream's rolling anomaly map.

    ``columns`` is ``[freq][n_new]`` (rows follow ``freq_hz``; a time-only model sends one row and an empty
    ``freq_hz``); the first new column starts at ``start_s`` and each spans ``frame_step_s``. Columns are sent
    once, when no later window can change them any more.
    """

    start_s: float = 0.0
    frame_step_s: float = 0.0
    freq_hz: list[float] = field(default_factory=list)
    columns: list[list[float | None]] = field(default_factory=list)

    type: str = field(init=False, default="map")

    def to_dict(self) -> dict[str, Any]:
        # a column no scored window covered (its windows were dropped) has no value: JSON null, never NaN
        data = super().to_dict()
        data["columns"] = [[_finite(v) for v in row] for row in data["columns"]]
        return data


@dataclass
class AlertEvent(Event):
    """The stream's alert state changed: ``state`` is ``raised`` or ``cleared``."""

    state: Literal["raised", "cleared"] = "raised"
    at_s: float = 0.0
    probability: float = 0.0
    reason: str = ""

    type: str = field(init=False, default="alert")


@dataclass
class SummaryEvent(Event):
    """The last event of every stream: what stream-guard concluded about all of it.

    ``verdict`` is ``synthetic`` when ``score`` (the mean raw score of the judged windows) is at or above the
    model's ``threshold``, i.e. when ``probability`` is at or above ``threshold_probability``: the threshold
    is an operating point (a false-alarm quantile of real speech), not the probability 0.5, so both numbers
    are sent and every view shows them together.
    """

    verdict: Verdict = "uncertain"
    score: float | None = None
    probability: float | None = None
    duration_s: float = 0.0
    windows: int = 0
    windows_dropped: int = 0
    windows_skipped: int = 0  # abstaining windows reported without running the model (StreamConfig)
    synthetic_fraction: float = 0.0
    alerts: int = 0
    reasons: list[str] = field(default_factory=list)
    max_score: float | None = None
    model: str = ""
    threshold: float | None = None
    threshold_probability: float | None = None

    type: str = field(init=False, default="summary")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        for key in ("score", "probability", "max_score", "threshold", "threshold_probability"):
            data[key] = _finite(data[key])
        return data


@dataclass
class ErrorEvent(Event):
    """Something went wrong with one stream; ``fatal`` says whether the stream was closed because of it."""

    code: str = "error"
    message: str = ""
    fatal: bool = False

    type: str = field(init=False, default="error")


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls  # type: ignore[misc]
    for cls in (ScoreEvent, MapEvent, AlertEvent, SummaryEvent, ErrorEvent)
}
