"""Map stitching against an offline reference, and the verdict state machine."""

from __future__ import annotations

import numpy as np
import pytest

from stream_guard.bundle import Calibration
from stream_guard.core.stitching import MapStitcher
from stream_guard.core.verdict import VerdictMachine


def reference_stitch(windows: list[tuple[float, np.ndarray]], step: float, total_s: float) -> np.ndarray:
    """Offline stitch by explicit interval overlap: the definition the incremental stitcher must meet."""
    n_cols = int(np.ceil(round(total_s / step, 9)))
    rows = windows[0][1].shape[0]
    acc = np.zeros((rows, n_cols))
    wgt = np.zeros(n_cols)
    for t0, m in windows:
        for j in range(m.shape[1]):
            a, b = t0 + j * step, t0 + (j + 1) * step
            for g in range(int(a // step) - 1, int(b // step) + 2):
                if 0 <= g < n_cols:
                    ov = max(0.0, min(b, (g + 1) * step) - max(a, g * step)) / step
                    if ov > 1e-12:
                        acc[:, g] += ov * m[:, j]
                        wgt[g] += ov
    with np.errstate(invalid="ignore"):
        return np.where(wgt > 0, acc / np.where(wgt > 0, wgt, 1), np.nan)


@pytest.mark.parametrize("hop_s", [0.5, 0.25, 0.3, 0.04])
def test_incremental_stitch_equals_offline_reference(hop_s: float) -> None:
    rate, step, win_s, total_s = 16000, 0.04, 2.0, 7.3
    rng = np.random.default_rng(int(hop_s * 100))
    hop = int(round(hop_s * rate))
    starts = list(range(0, int(total_s * rate) - int(win_s * rate) + 1, hop))
    starts.append(int(total_s * rate) - int(win_s * rate))  # the tail window, as the stream plans it
    maps = [rng.standard_normal((3, 50)) for _ in starts]
    st = MapStitcher(step, rate)
    emitted: list[tuple[int, np.ndarray]] = []
    for i, (s, m) in enumerate(zip(starts, maps, strict=True)):
        st.add(s, m)
        nxt = starts[i + 1] if i + 1 < len(starts) else s + 1
        out = st.finalize(nxt)
        if out is not None:
            emitted.append(out)
    out = st.flush(int(total_s * rate))
    if out is not None:
        emitted.append(out)
    # every column exactly once, in order, with no gaps
    cols = [c for c, block in emitted for c in range(c, c + block.shape[1])]
    assert cols == list(range(len(cols)))
    got = np.concatenate([b for _, b in emitted], axis=1)
    ref = reference_stitch([(s / rate, m) for s, m in zip(starts, maps, strict=True)], step, total_s)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_stitcher_refuses_windows_behind_emitted_columns() -> None:
    st = MapStitcher(0.04, 16000)
    st.add(0, np.ones((2, 10)))
    st.finalize(3200)  # columns 0..4 are final
    with pytest.raises(ValueError, match="before columns"):
        st.add(0, np.ones((2, 10)))
    with pytest.raises(ValueError, match="rows"):
        st.add(3200, np.ones((3, 10)))


CAL = Calibration(threshold=0.0, center=0.0, scale=1.0)


def run(machine: VerdictMachine, scores: list[float]) -> tuple[list[str], list[str | None]]:
    steps = [machine.step(s) for s in scores]
    return [s.verdict for s in steps], [s.alert for s in steps]


def test_alert_needs_consecutive_windows_and_clears_with_hysteresis() -> None:
    m = VerdictMachine(CAL, smoothing=0.0, alert_on=0.8, alert_off=0.5, alert_windows=2)
    # logits: 3 -> p 0.95, 1 -> p 0.73 (between off and on), -3 -> p 0.05
    verdicts, alerts = run(m, [-3, 3, -3, 3, 3, 1, 1, 3, -3, -3])
    assert alerts == [None, None, None, None, "raised", None, None, None, "cleared", None]
    assert verdicts == [
        "real",
        "uncertain",
        "real",
        "uncertain",
        "synthetic",
        "synthetic",
        "synthetic",
        "synthetic",
        "real",
        "real",
    ]
    assert m.alerts == 1


def test_hovering_between_thresholds_does_not_flap() -> None:
    m = VerdictMachine(CAL, smoothing=0.0, alert_on=0.8, alert_off=0.5, alert_windows=1)
    _, alerts = run(m, [3, 0.5, 1.0, 0.2, 1.2, 0.1])  # p stays in [0.52, 0.77] after the raise
    assert alerts == ["raised", None, None, None, None, None]


def test_smoothing_and_abstaining_windows() -> None:
    m = VerdictMachine(CAL, smoothing=0.5, alert_on=0.8, alert_off=0.5, alert_windows=1)
    a = m.step(-10)
    b = m.step(10)
    assert a.smoothed == pytest.approx(a.probability)
    assert b.smoothed == pytest.approx(0.5 * a.smoothed + 0.5 * b.probability)
    c = m.step(10, abstain=True)  # an abstaining window reports but does not move the state
    assert c.verdict == "uncertain" and c.smoothed == pytest.approx(b.smoothed) and c.alert is None
    with pytest.raises(ValueError):
        VerdictMachine(CAL, alert_on=0.5, alert_off=0.6)
