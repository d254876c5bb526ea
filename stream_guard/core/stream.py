"""Per-stream state, sans-I/O: bytes in, windows out; results in, events out.

:class:`StreamState` owns everything that belongs to one speaker's audio: the decoder (with its partial-frame
carry), the resampler, the ring buffer, the window plan, the verdict machine and the map stitcher. It never
does I/O, never sleeps and never touches asyncio, so it is tested by calling it; the engine only moves windows
from :meth:`StreamState.feed` to a backend and results back to :meth:`StreamState.on_result`.

Per-channel mode: :func:`make_stream_states` turns a multi-channel stream into one independent state per
channel (ids ``"<id>/0"``, ``"<id>/1"`` or ``"<id>/<label>"``), so each speaker of a stereo call is judged
on its own.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from stream_guard.bundle import BundleMetadata
from stream_guard.core.formats import AudioData, AudioFormat, AudioFormatError, Decoder
from stream_guard.core.quality import QualityConfig, check_window
from stream_guard.core.resample import StreamResampler
from stream_guard.core.ringbuffer import RingBuffer
from stream_guard.core.stitching import MapStitcher
from stream_guard.core.verdict import VerdictMachine, VerdictStep
from stream_guard.core.windowing import WindowPlanner, WindowSpan
from stream_guard.events import AlertEvent, ErrorEvent, Event, MapEvent, ScoreEvent, SummaryEvent


class StreamClosedError(RuntimeError):
    """Audio was fed to a stream that has already finished."""


@dataclass(frozen=True)
class StreamConfig:
    """How one stream is windowed and judged.

    ``hop_s`` overrides the bundle's recommended hop (smaller = more frequent scores, more compute).
    ``smoothing`` is the EMA weight of the past (0 = no smoothing). The alert is raised after
    ``alert_windows`` judged windows with smoothed probability >= ``alert_on`` and cleared below
    ``alert_off``.
    ``warmup`` scores growing low-confidence windows from ``min_audio_s`` on, before the first full window.
    ``abstain_on`` lists quality reasons that make a window abstain. ``skip_abstaining`` (default on) keeps
    such windows from the model: their score could never count towards a verdict, so inference on silence or
    clipping is wasted work; they are still reported (a score event with no score and their reasons) and
    counted (``SummaryEvent.windows_skipped``), and their map columns stay empty as for dropped windows. Turn
    it off to see the model's raw score on abstaining windows. ``split_channels`` judges every channel
    of a multi-channel stream as its own stream, named by ``channel_labels`` (default ``0, 1, ...``).
    ``close_on_error`` closes the stream after a rejected chunk instead of carrying on.
    ``realtime`` (engine): under overload drop the stalest windows (live audio) instead of making ``feed``
    wait (files). ``event_queue_limit`` (engine) bounds the events buffered for a slow consumer.
    """

    hop_s: float | None = None
    emit_map: bool = True
    smoothing: float = 0.5
    alert_on: float = 0.8
    alert_off: float = 0.5
    alert_windows: int = 2
    warmup: bool = True
    abstain_on: tuple[str, ...] = ("no_speech", "clipped")
    skip_abstaining: bool = True
    quality: QualityConfig = field(default_factory=QualityConfig)
    split_channels: bool = False
    channel_labels: tuple[str, ...] | None = None
    close_on_error: bool = False
    realtime: bool = True
    event_queue_limit: int = 1024

    def __post_init__(self) -> None:
        if self.hop_s is not None and not self.hop_s > 0:
            raise ValueError(f"hop_s must be positive, got {self.hop_s}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")
        if not 0.0 < self.alert_off < self.alert_on <= 1.0:
            raise ValueError(f"need 0 < alert_off < alert_on <= 1, got {self.alert_off}, {self.alert_on}")
        if self.alert_windows < 1:
            raise ValueError("alert_windows must be >= 1")
        if self.event_queue_limit < 8:
            raise ValueError("event_queue_limit must be >= 8")


@dataclass
class Window:
    """One window of mono audio at the bundle's rate, ready to score.

    ``ready_at`` is the clock time its last sample was accepted (latency is measured from there);
    ``reasons`` are the quality checks' abstain reasons; ``start_sample`` is its start at the model rate.
    ``skip`` marks a window that abstains and need not be scored: a driver resolves it with
    :meth:`StreamState.on_skipped` instead of running the model (scoring it anyway stays allowed).
    """

    stream_id: str
    index: int
    start_s: float
    end_s: float
    samples: np.ndarray
    low_confidence: bool
    reasons: list[str]
    ready_at: float
    start_sample: int = 0
    skip: bool = False

    @property
    def length(self) -> int:
        return int(self.samples.shape[0])


@dataclass
class _Resolved:
    window: Window
    score: float | None  # None = dropped or failed
    amap: np.ndarray | None
    latency_ms: float
    skipped: bool = False  # abstained and was not scored (score is None)


class StreamState:
    """Everything about one mono stream (or one channel of a multi-channel stream); see the module
    docstring."""

    def __init__(
        self,
        stream_id: str,
        meta: BundleMetadata,
        fmt: AudioFormat,
        config: StreamConfig | None = None,
        channel: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream_id = stream_id
        self.meta = meta
        self.fmt = fmt
        self.config = config or StreamConfig()
        self.channel = channel
        if channel is not None and not 0 <= channel < fmt.channels:
            raise ValueError(
                f"{stream_id}: channel {channel} does not exist in a {fmt.channels}-channel stream"
            )
        self._clock = clock
        self.rate = meta.sample_rate
        hop = self.config.hop_s if self.config.hop_s is not None else meta.hop_s
        self.window_samples = meta.window_samples
        self.hop_samples = max(1, int(round(hop * self.rate)))
        self._decoder = Decoder(fmt)
        self._resampler = StreamResampler(fmt.sample_rate, self.rate, 1)
        self._ring = RingBuffer(self.window_samples + self.hop_samples + 1)
        self._planner = WindowPlanner(
            self.window_samples, self.hop_samples, meta.min_samples, self.config.warmup
        )
        self._verdict = VerdictMachine(
            meta.calibration,
            self.config.smoothing,
            self.config.alert_on,
            self.config.alert_off,
            self.config.alert_windows,
        )
        self._stitcher = MapStitcher(meta.map_axes.frame_step_s, self.rate)
        self._next_index = 0  # index of the next window handed out
        self._next_resolve = 0  # index of the next window whose result is applied
        self._issued: dict[int, Window] = {}  # handed out, not yet resolved
        self._results: dict[int, _Resolved] = {}  # resolved out of order, waiting for earlier windows
        self.input_frames = 0
        self._pending: list[np.ndarray] = []  # decoded mono input not yet resampled
        self._due_input: int | None = None  # input frames that could complete the next window (cached)
        self._abstain_on = frozenset(self.config.abstain_on)
        self._finishing = False
        self.finished = False
        self.flushed = False
        self.scored = 0
        self.dropped = 0
        self.failed = 0
        self.skipped = 0
        self.rejected_chunks = 0
        # running totals for the summary (constant memory however long the stream): judged full-length and
        # judged low-confidence windows, as [count, sum of scores]; judged windows at or above the threshold
        self._judged_full = [0, 0.0]
        self._judged_low = [0, 0.0]
        self._judged_synthetic = 0
        self._abstain_reasons: Counter[str] = Counter()
        self._max_score: float | None = None

    # --- audio in -----------------------------------------------------------------------------------------

    @property
    def windows_cut(self) -> int:
        """Windows handed out so far (scored, dropped, failed or still waiting)."""
        return self._next_index

    @property
    def outstanding(self) -> int:
        """Windows handed out whose result has not been applied yet."""
        return len(self._issued)

    def feed(self, data: AudioData) -> list[Window]:
        """Accept a chunk of audio in the stream's format; return the windows it completed.

        Raises :class:`AudioFormatError` (naming the stream) for a chunk that cannot be decoded or holds
        NaN/inf samples; such a chunk is discarded whole and the stream stays usable.
        """
        return list(self.feed_iter(data))

    def feed_iter(self, data: AudioData) -> Iterator[Window]:
        """Like :meth:`feed`, but the windows are cut lazily as the iterator is consumed.

        The chunk is decoded and validated at once (a bad chunk raises here, before anything is kept); a long
        recording then yields its windows one by one, so a caller can queue each before the next is cut and
        memory stays bounded however large the chunk.
        """
        if self.finished:
            raise StreamClosedError(f"stream {self.stream_id!r} is closed; it accepts no more audio")
        try:
            x = self._decoder.decode(data)
        except AudioFormatError as exc:
            self.rejected_chunks += 1
            raise AudioFormatError(f"stream {self.stream_id!r}: {exc}") from None
        if x.shape[0] == 0:
            return iter(())
        self.input_frames += x.shape[0]
        mono = (
            x[:, self.channel]
            if self.channel is not None
            else (x[:, 0] if x.shape[1] == 1 else x.mean(axis=1))
        )
        if isinstance(data, np.ndarray) and np.may_share_memory(mono, data):
            mono = mono.copy()  # kept until the next window is due: the caller may reuse its buffer meanwhile
        # Resampling and windowing run only when the audio received so far could complete the next window:
        # telephony sends 20 ms chunks, and one resampler call per hop instead of 25 cuts the per-stream cost
        # without delaying any window (the chunk that completes a window is processed at once). The input
        # frame count that could complete it is computed once per window, not once per chunk.
        self._pending.append(mono)
        due = self._due_input
        if due is None:
            due = self._due_input = -(-self._planner.next_end() * self.fmt.sample_rate // self.rate)
        if self.input_frames < due:
            return iter(())
        self._due_input = None  # the planner moves on while the pending audio is processed
        return self._process_pending()

    def _process_pending(self) -> Iterator[Window]:
        x = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        self._pending = []
        step = max(1, self.fmt.sample_rate)  # resample about a second at a time
        for i in range(0, len(x), step):
            if self.finished and not self._finishing:
                return  # the stream was finished while this chunk was being consumed: the rest is discarded
            yield from self._push(self._resampler.process(x[i : i + step, None])[:, 0])

    def _push(self, y: np.ndarray) -> list[Window]:
        out: list[Window] = []
        step = self.hop_samples
        for i in range(0, len(y), step):
            self._ring.write(y[i : i + step])
            out.extend(self._cut(span) for span in self._planner.advance(self._ring.total))
        return out

    def _cut(self, span: WindowSpan) -> Window:
        samples = self._ring.read(span.start, span.end)
        reasons = check_window(samples, self.rate, self.config.quality)
        skip = bool(reasons) and self.config.skip_abstaining and not self._abstain_on.isdisjoint(reasons)
        w = Window(
            self.stream_id,
            self._next_index,
            span.start / self.rate,
            span.end / self.rate,
            samples,
            span.low_confidence,
            reasons,
            self._clock(),
            span.start,
            skip,
        )
        self._issued[w.index] = w
        self._next_index += 1
        return w

    def finish(self) -> list[Window]:
        """End of audio: flush the resampler and return the remaining windows (the tail). Idempotent."""
        if self.finished:
            return []
        self.finished = True
        self._finishing = True
        out = list(self._process_pending()) if self._pending else []
        self._finishing = False
        out += self._push(self._resampler.flush()[:, 0])
        out.extend(self._cut(span) for span in self._planner.finish(self._ring.total))
        return out

    # --- results in ---------------------------------------------------------------------------------------

    def on_result(
        self, window: Window, score: float, amap: np.ndarray | None, latency_ms: float
    ) -> list[Event]:
        """Apply a window's score and map; returns the events it produced (in window order)."""
        if not np.isfinite(score):
            return self.on_failed(
                window, f"the model returned a non-finite score ({score}) for window {window.index}"
            )
        return self._resolve(_Resolved(window, float(score), amap, latency_ms))

    def on_skipped(self, window: Window) -> list[Event]:
        """Resolve an abstaining window without scoring it (``window.skip``); returns the events it produced.

        The window gets its score event (no score, probability NaN, verdict ``uncertain``, its abstain
        reasons) in its place in the window order; the smoother, the alert and the summary score are untouched
        and its map columns stay empty unless another, scored window covers them.
        """
        if not window.skip:
            raise ValueError(
                f"{self.stream_id}: window {window.index} has no abstain reason to skip it; score it"
            )
        self.skipped += 1
        latency = (self._clock() - window.ready_at) * 1000.0
        return self._resolve(_Resolved(window, None, None, latency, skipped=True))

    def on_dropped(self, window: Window) -> list[Event]:
        """The engine dropped this window under overload; it is counted and its map columns stay empty."""
        self.dropped += 1
        return self._resolve(_Resolved(window, None, None, 0.0))

    def on_failed(self, window: Window, message: str) -> list[Event]:
        """Inference failed for this window: an error event, and the stream carries on."""
        self.failed += 1
        events: list[Event] = [
            ErrorEvent(self.stream_id, code="inference_failed", message=message, fatal=False)
        ]
        return events + self._resolve(_Resolved(window, None, None, 0.0))

    def _resolve(self, res: _Resolved) -> list[Event]:
        idx = res.window.index
        if idx not in self._issued or idx in self._results:
            raise ValueError(f"{self.stream_id}: window {idx} is not awaiting a result")
        self._results[idx] = res
        events: list[Event] = []
        while self._next_resolve in self._results:
            r = self._results.pop(self._next_resolve)
            del self._issued[self._next_resolve]
            self._next_resolve += 1
            if r.score is not None:
                events.extend(self._apply(r))
            elif r.skipped:
                events.append(self._apply_skipped(r))
        if self.config.emit_map:
            bound = (
                # the oldest unresolved window: windows resolve in index order, so it is the next to resolve
                self._issued[self._next_resolve].start_sample
                if self._issued
                else (self._ring.total if self.finished else self._planner.next_start_lower_bound())
            )
            if self._issued or not self.finished:
                events.extend(self._map_event(self._stitcher.finalize(bound)))
        return events

    def _apply(self, r: _Resolved) -> list[Event]:
        w = r.window
        score = r.score
        assert score is not None
        abstain = [reason for reason in w.reasons if reason in self.config.abstain_on]
        step = self._verdict.step(score, abstain=bool(abstain))
        self.scored += 1
        if not abstain:
            acc = self._judged_low if w.low_confidence else self._judged_full
            acc[0] += 1
            acc[1] += score
            self._judged_synthetic += int(score >= self.meta.calibration.threshold)
        self._abstain_reasons.update(abstain)
        self._max_score = score if self._max_score is None else max(self._max_score, score)
        events: list[Event] = [self._score_event(r, score, step)]
        if step.alert == "raised":
            events.append(
                AlertEvent(
                    self.stream_id,
                    state="raised",
                    at_s=w.end_s,
                    probability=step.smoothed,
                    reason=f"smoothed probability {step.smoothed:.2f} >= {self.config.alert_on:.2f} for "
                    f"{self.config.alert_windows} window(s)",
                )
            )
        elif step.alert == "cleared":
            events.append(
                AlertEvent(
                    self.stream_id,
                    state="cleared",
                    at_s=w.end_s,
                    probability=step.smoothed,
                    reason=f"smoothed probability {step.smoothed:.2f} < {self.config.alert_off:.2f}",
                )
            )
        if self.config.emit_map and r.amap is not None:
            amap = np.asarray(r.amap)
            try:
                self._stitcher.add(w.start_sample, amap)
            except ValueError as exc:
                events.append(ErrorEvent(self.stream_id, code="bad_map", message=str(exc), fatal=False))
        return events

    def _apply_skipped(self, r: _Resolved) -> ScoreEvent:
        abstain_on = self.config.abstain_on
        self._abstain_reasons.update(reason for reason in r.window.reasons if reason in abstain_on)
        return self._score_event(r, math.nan, self._verdict.hold())

    def _score_event(self, r: _Resolved, score: float, step: VerdictStep) -> ScoreEvent:
        w = r.window
        return ScoreEvent(
            self.stream_id,
            window_index=w.index,
            start_s=w.start_s,
            end_s=w.end_s,
            score=score,
            probability=step.probability,
            smoothed=step.smoothed,
            verdict=step.verdict,
            reasons=list(w.reasons),
            low_confidence=w.low_confidence,
            latency_ms=r.latency_ms,
            model=self.meta.name,
        )

    def _map_event(self, emitted: tuple[int, np.ndarray] | None) -> list[Event]:
        if emitted is None:
            return []
        col0, cols = emitted
        step = self.meta.map_axes.frame_step_s
        freq = list(self.meta.map_axes.freq_hz) if len(self.meta.map_axes.freq_hz) == cols.shape[0] else []
        return [
            MapEvent(
                self.stream_id,
                start_s=round(col0 * step, 9),
                frame_step_s=step,
                freq_hz=freq,
                columns=cols.tolist(),
            )
        ]

    # --- end of stream ------------------------------------------------------------------------------------

    def flush(self) -> list[Event]:
        """After :meth:`finish` and once every window is resolved: the map's remaining columns."""
        if not self.finished:
            raise RuntimeError(f"{self.stream_id}: flush() before finish()")
        if self._issued:
            raise RuntimeError(
                f"{self.stream_id}: flush() with {len(self._issued)} window(s) still unresolved"
            )
        if self.flushed or not self.config.emit_map:
            self.flushed = True
            return []
        self.flushed = True
        return self._map_event(self._stitcher.flush(self._ring.total))

    @property
    def duration_s(self) -> float:
        return self.input_frames / self.fmt.sample_rate

    def summary(self) -> SummaryEvent:
        """The stream's conclusion.

        The clip score is the mean of the judged (non-abstaining) full-length windows' raw scores, or of the
        judged low-confidence windows when the stream never filled a window. The mean is used rather than a
        high quantile because the bundle's threshold is calibrated per window: the mean of homogeneous windows
        keeps that operating point, while a high quantile would raise false alarms on long real calls. Partly
        synthetic streams show up in ``synthetic_fraction``, ``max_score`` and ``alerts``.
        """
        cal = self.meta.calibration
        n_judged = self._judged_full[0] + self._judged_low[0]
        count, total = self._judged_full if self._judged_full[0] else self._judged_low
        reasons: list[str] = []
        if self.input_frames / self.fmt.sample_rate < self.meta.min_audio_s:
            reasons.append("too_short")
        if n_judged:
            score: float | None = total / count
            verdict = "synthetic" if score >= cal.threshold else "real"
            probability: float | None = cal.probability(score)
            synthetic_fraction = self._judged_synthetic / n_judged
        else:
            score = probability = None
            verdict = "uncertain"
            synthetic_fraction = 0.0
            reasons.extend(r for r, _ in self._abstain_reasons.most_common())
            if not reasons:
                reasons.append("no_windows")
        return SummaryEvent(
            self.stream_id,
            verdict=verdict,
            score=score,
            probability=probability,
            duration_s=self.duration_s,
            windows=self.scored + self.skipped,
            windows_dropped=self.dropped + self.failed,
            windows_skipped=self.skipped,
            synthetic_fraction=synthetic_fraction,
            alerts=self._verdict.alerts,
            reasons=reasons,
            max_score=self._max_score,
            model=self.meta.name,
            threshold=cal.threshold,
            threshold_probability=cal.threshold_probability,
        )


def channel_stream_ids(stream_id: str, fmt: AudioFormat, config: StreamConfig) -> list[str]:
    """Ids of the per-channel streams of a split stream."""
    labels = config.channel_labels or tuple(str(i) for i in range(fmt.channels))
    if len(labels) != fmt.channels:
        raise ValueError(f"{stream_id}: {len(labels)} channel labels for {fmt.channels} channels")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{stream_id}: channel labels must be distinct")
    return [f"{stream_id}/{label}" for label in labels]


def make_stream_states(
    stream_id: str,
    meta: BundleMetadata,
    fmt: AudioFormat,
    config: StreamConfig | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[StreamState]:
    """One state for a normal stream (channels averaged), or one per channel when
    ``config.split_channels``."""
    config = config or StreamConfig()
    if not config.split_channels or fmt.channels == 1:
        return [StreamState(stream_id, meta, fmt, config, clock=clock)]
    return [
        StreamState(sid, meta, fmt, config, channel=i, clock=clock)
        for i, sid in enumerate(channel_stream_ids(stream_id, fmt, config))
    ]


def combine_summaries(stream_id: str, parts: list[SummaryEvent]) -> SummaryEvent:
    """One summary for a split stream: synthetic if any channel is, real if all are, else uncertain."""
    verdicts = {p.verdict for p in parts}
    verdict = "synthetic" if "synthetic" in verdicts else ("real" if verdicts == {"real"} else "uncertain")
    scored = [p for p in parts if p.score is not None]
    top = max(scored, key=lambda p: p.score or 0.0) if scored else None
    maxes = [p.max_score for p in parts if p.max_score is not None]
    reasons = sorted({r for p in parts for r in p.reasons})
    return SummaryEvent(
        stream_id,
        verdict=verdict,
        score=top.score if top else None,
        probability=top.probability if top else None,
        duration_s=max((p.duration_s for p in parts), default=0.0),
        windows=sum(p.windows for p in parts),
        windows_dropped=sum(p.windows_dropped for p in parts),
        windows_skipped=sum(p.windows_skipped for p in parts),
        synthetic_fraction=max((p.synthetic_fraction for p in parts), default=0.0),
        alerts=sum(p.alerts for p in parts),
        reasons=reasons,
        max_score=max(maxes) if maxes else None,
        model=parts[0].model if parts else "",
        threshold=parts[0].threshold if parts else None,
        threshold_probability=parts[0].threshold_probability if parts else None,
    )
