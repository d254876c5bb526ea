"""From raw window scores to a verdict: calibration, smoothing and an alert state machine with hysteresis.

- Calibration maps a raw score to a probability with the bundle's logistic ``Calibration`` (fitted on held-out
  data and stored in the bundle), so thresholds below are probabilities whatever the model family.
- Smoothing is an exponential moving average over window probabilities: one loud cough should not flip a call.
- The alert is raised when the smoothed probability stays at or above ``alert_on`` for ``alert_windows``
  consecutive judged windows and cleared when it falls below ``alert_off`` (``alert_off < alert_on``), so a
  score hovering around one threshold does not make the alert flap.
- Windows that abstain (no speech, clipped) are reported but neither feed the smoother nor move the alert;
  by default the model does not even see them (:meth:`VerdictMachine.hold` reports such a window unscored).

Per-window verdict: ``synthetic`` while the alert is raised, ``real`` when the smoothed probability is below
``alert_off``, otherwise ``uncertain`` (including every abstaining window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from stream_guard.bundle import Calibration


@dataclass(frozen=True)
class VerdictStep:
    """What one window did to the stream's verdict state."""

    probability: float
    smoothed: float
    verdict: Literal["real", "synthetic", "uncertain"]
    alert: Literal["raised", "cleared"] | None  # a change of alert state, if any


class VerdictMachine:
    """Sans-I/O state for one stream; feed it windows in order with :meth:`step`."""

    def __init__(
        self,
        calibration: Calibration,
        smoothing: float = 0.5,
        alert_on: float = 0.8,
        alert_off: float = 0.5,
        alert_windows: int = 2,
    ) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError("smoothing must be in [0, 1)")
        if not 0.0 < alert_off < alert_on <= 1.0:
            raise ValueError("need 0 < alert_off < alert_on <= 1")
        if alert_windows < 1:
            raise ValueError("alert_windows must be >= 1")
        self.calibration = calibration
        self.smoothing = smoothing
        self.alert_on = alert_on
        self.alert_off = alert_off
        self.alert_windows = alert_windows
        self.smoothed: float | None = None
        self.alert_raised = False
        self.alerts = 0
        self._above = 0

    def hold(self) -> VerdictStep:
        """An abstaining window that was not scored: ``uncertain``, no probability (NaN), state unchanged.

        The smoothed value is the stream's current one (NaN before the first judged window), so a consumer
        plotting it sees the verdict state carried through the silence rather than a made-up number.
        """
        smoothed = self.smoothed if self.smoothed is not None else math.nan
        return VerdictStep(math.nan, smoothed, "uncertain", None)

    def step(self, score: float, abstain: bool = False) -> VerdictStep:
        p = self.calibration.probability(score)
        if abstain:
            smoothed = self.smoothed if self.smoothed is not None else p
            return VerdictStep(p, smoothed, "uncertain", None)
        s = p if self.smoothed is None else self.smoothing * self.smoothed + (1.0 - self.smoothing) * p
        self.smoothed = s
        change: Literal["raised", "cleared"] | None = None
        if self.alert_raised:
            if s < self.alert_off:
                self.alert_raised = False
                self._above = 0
                change = "cleared"
        else:
            self._above = self._above + 1 if s >= self.alert_on else 0
            if self._above >= self.alert_windows:
                self.alert_raised = True
                self.alerts += 1
                change = "raised"
        if self.alert_raised:
            verdict: Literal["real", "synthetic", "uncertain"] = "synthetic"
        elif s < self.alert_off:
            verdict = "real"
        else:
            verdict = "uncertain"
        return VerdictStep(p, s, verdict, change)
