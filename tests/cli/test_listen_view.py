"""The live ``listen`` view shows the number its verdict follows (the smoothed probability) and the rules that
turn it into a verdict, so a window at P 0.64 next to "real" never reads as a contradiction."""

from __future__ import annotations

from rich.console import Console

from stream_guard.events import ScoreEvent
from stream_guard.sinks.terminal import LiveView


def _render(view: LiveView) -> str:
    console = Console(record=True, width=160, color_system=None)
    console.print(view.render())
    return console.export_text()


def test_live_view_shows_the_smoothed_probability_and_the_rules_of_its_verdict() -> None:
    view = LiveView(source="mic", model="fused", threshold_probability=0.6496, alert_on=0.8, alert_off=0.5)
    view.write(
        ScoreEvent(
            "mic", window_index=3, end_s=2.0, score=0.58, probability=0.641, smoothed=0.472, verdict="real"
        )
    )
    text = _render(view)
    assert "verdict real" in text
    assert "smoothed P(synthetic) 0.47" in text and "(window 0.64)" in text
    assert "real below 0.50, alert at 0.80 or above" in text
    assert "threshold for a whole recording is 0.65" in text
