"""JSON lines, map-picture and terminal sinks fed with real event objects."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from rich.console import Console

from stream_guard.events import AlertEvent, MapEvent, ScoreEvent, SummaryEvent
from stream_guard.sinks.jsonl import JsonlSink
from stream_guard.sinks.map_png import MapRecorder, render_map_png, spectrogram_db
from stream_guard.sinks.terminal import FileOutcome, LiveView, scan_summary_table, sparkline


def _events() -> list:
    freq = [200.0, 800.0, 3000.0]
    out = []
    for i in range(4):
        out.append(
            ScoreEvent(
                "s",
                window_index=i,
                start_s=0.5 * i,
                end_s=0.5 * i + 1.0,
                score=float(i),
                probability=0.2 * i,
                smoothed=0.2 * i,
                verdict="real" if i < 2 else "synthetic",
            )
        )
        cols = [[float(i + r) for _ in range(5)] for r in range(3)]
        out.append(MapEvent("s", start_s=0.2 * 5 * i, frame_step_s=0.2, freq_hz=freq, columns=cols))
    out.append(AlertEvent("s", state="raised", at_s=2.0, probability=0.7))
    out.append(SummaryEvent("s", verdict="synthetic", score=3.0, probability=0.6, duration_s=2.5, windows=4))
    return out


def test_jsonl_sink_writes_one_parseable_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    with JsonlSink(path) as sink:
        for event in _events():
            sink.write(event)
    lines = path.read_text().splitlines()
    assert len(lines) == len(_events())
    parsed = [json.loads(line) for line in lines]
    assert parsed[-1]["type"] == "summary" and parsed[-1]["verdict"] == "synthetic"
    assert all(p["v"] == 1 and p["stream"] == "s" for p in parsed)


def test_jsonl_sink_does_not_close_a_stream_it_was_given() -> None:
    buffer = io.StringIO()
    sink = JsonlSink(buffer)
    sink.write(_events()[0])
    sink.close()
    assert not buffer.closed
    assert json.loads(buffer.getvalue())["type"] == "score"


def test_map_recorder_stitches_columns_in_order() -> None:
    recorder = MapRecorder()
    for event in _events():
        recorder.write(event)
    amap = recorder.anomaly_map()
    assert amap.shape == (3, 20)
    np.testing.assert_array_equal(amap[0, ::5], [0, 1, 2, 3])
    assert recorder.probabilities == [0.0, 0.2, 0.4, 0.6000000000000001]


def test_map_recorder_tolerates_columns_without_values() -> None:
    recorder = MapRecorder()
    recorder.write(MapEvent("s", start_s=0.0, frame_step_s=0.1, freq_hz=[100.0], columns=[[1.0, None, 2.0]]))
    assert np.isnan(recorder.anomaly_map()[0, 1])


def test_render_map_png_writes_a_png(tmp_path: Path) -> None:
    recorder = MapRecorder()
    for event in _events():
        recorder.write(event)
    audio = np.sin(2 * np.pi * 300 * np.arange(16000 * 4) / 16000).astype(np.float32)
    out = render_map_png(tmp_path / "map.png", recorder, audio, 16000, "title")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_spectrogram_peaks_at_the_tone_frequency() -> None:
    sr = 16000
    audio = np.sin(2 * np.pi * 1000 * np.arange(sr) / sr).astype(np.float32)
    spec, hop_s, bin_hz = spectrogram_db(audio, sr)
    assert abs(np.argmax(spec.mean(axis=1)) * bin_hz - 1000) <= bin_hz


def test_spectrogram_of_an_hour_stays_small() -> None:
    audio = np.zeros(3600 * 100, dtype=np.float32)  # an hour at 100 Hz keeps the test cheap
    spec, _, _ = spectrogram_db(audio, 100, max_columns=3000)
    assert spec.shape[1] <= 3000


def test_scan_table_lists_failures_with_their_reason() -> None:
    summary = _events()[-1]
    table = scan_summary_table(
        [FileOutcome("good.wav", summary=summary), FileOutcome("bad.wav", error="bad.wav: file is empty")],
        "m",
    )
    console = Console(file=io.StringIO(), width=200)
    console.print(table)
    text = console.file.getvalue()
    assert "good.wav" in text and "synthetic" in text
    assert "bad.wav" in text and "file is empty" in text and "failed" in text
    assert "bad.wav: file is empty" not in text  # the row names the file once


def test_compact_scan_table_keeps_verdicts_on_one_line_in_80_columns() -> None:
    summary = _events()[-1]
    outcomes = [FileOutcome("a/rather/long/path/to/some/recording-0001.wav", summary=summary)]
    console = Console(file=io.StringIO(), width=80)
    console.print(scan_summary_table(outcomes, "m", compact=True))
    text = console.file.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "synthetic" in text and "0.600" in text


def test_live_view_tracks_verdict_alert_and_strip() -> None:
    view = LiveView(source="mic", model="m", strip_rows=2)
    for event in _events():
        view.write(event)
    assert view.verdict == "synthetic"
    assert view.alert_raised and view.alerts == 1
    assert len(view.strip) == 20 and view.strip[0].shape == (2,)
    console = Console(file=io.StringIO(), width=120)
    console.print(view.render())
    assert "RAISED" in console.file.getvalue()


def test_sparkline_maps_zero_and_one_to_the_extremes() -> None:
    assert sparkline([0.0, 1.0], 2) == " █"
