"""Score a manifest with an AntiDeepfake detector (PyTorch or ONNX bundle) and write the evaluation report.

Scoring follows AntiDeepfake's test pipeline: each file whole, 16 kHz, per-utterance normalisation, batch 1
(no cropping), unless ``max_seconds`` caps very long files (memory grows with length). The score is
logit(fake) - logit(real); AntiDeepfake's own CSV stores P(real) = sigmoid(-score), which ranks identically.

The report has a pooled row, one row per subset (ID prefix before the first ``-``, AntiDeepfake's
convention; the source column of corpus manifests), one per channel when the manifest has several, and one
per spoof system (that system's fakes against all real clips), as markdown and JSON.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.antideepfake.architectures import SAMPLE_RATE
from training.antideepfake.audio import AudioReadError, load_audio
from training.antideepfake.data import Utterance
from training.antideepfake.metrics import Row, table_row

#: The shipped decision threshold on logit(fake) - logit(real): the model's own 50/50 point.
DEFAULT_THRESHOLD = 0.0

Scorer = Callable[[np.ndarray], float]


def torch_scorer(detector: Any) -> Scorer:
    """Score one waveform with a PyTorch :class:`AntiDeepfakeDetector` (eval mode, no grad)."""
    import torch

    detector.eval()

    def score(wav: np.ndarray) -> float:
        with torch.inference_mode():
            out = detector(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None])
        return float(out.score[0])

    return score


def onnx_scorer(path: str | Path, threads: int | None = None) -> Scorer:
    """Score one waveform with an exported bundle through onnxruntime (CPU)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def score(wav: np.ndarray) -> float:
        out = session.run(["score"], {"audio": np.ascontiguousarray(wav, dtype=np.float32)[None]})
        return float(out[0][0])

    return score


@dataclass
class ScoredItem:
    utt: Utterance
    score: float


@dataclass
class Report:
    """Evaluation result: tables plus provenance; ``to_markdown`` / ``to_json`` for the run folder."""

    model: str
    manifest: str
    threshold: float
    pooled: Row
    subsets: list[Row] = field(default_factory=list)
    systems: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "model": self.model,
                "manifest": self.manifest,
                "score": "logit(fake) - logit(real); higher = more likely synthetic",
                "threshold": self.threshold,
                "pooled": self.pooled.as_dict(),
                "subsets": [r.as_dict() for r in self.subsets],
                "systems": [r.as_dict() for r in self.systems],
                "skipped": self.skipped,
                "seconds": round(self.seconds, 2),
            },
            indent=2,
            allow_nan=True,
        )

    def to_markdown(self) -> str:
        def fmt(v: float) -> str:
            return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"

        head = (
            "| group | real | fake | EER % | EER % (interp.) | AUC % | miss % @thr | false alarm % @thr |\n"
            "|---|---|---|---|---|---|---|---|\n"
        )

        def rows(items: Sequence[Row]) -> str:
            return "".join(
                f"| {r.name} | {r.n_real} | {r.n_fake} | {fmt(r.eer)} | {fmt(r.eer_interpolated)} | "
                f"{fmt(r.auc)} | "
                f"{fmt(r.miss_at_threshold)} | {fmt(r.false_alarm_at_threshold)} |\n"
                for r in items
            )

        parts = [
            f"# AntiDeepfake evaluation: {self.model}\n",
            f"Manifest: `{self.manifest}`. Score: logit(fake) - logit(real); threshold {self.threshold:g}.\n",
            "## Pooled and per subset\n",
            head + rows([self.pooled, *self.subsets]),
            "## Per spoof system (that system's fakes against all real clips)\n",
            head + rows(self.systems),
        ]
        if self.skipped:
            parts.append(
                f"Skipped {len(self.skipped)} unreadable file(s): " + "; ".join(self.skipped[:10]) + "\n"
            )
        return "\n".join(parts)


def score_items(
    items: Sequence[Utterance],
    scorer: Scorer,
    *,
    max_seconds: float | None = None,
    progress: bool = True,
) -> tuple[list[ScoredItem], list[str]]:
    """Score every utterance; unreadable files are skipped and reported (message names the file)."""
    scored: list[ScoredItem] = []
    skipped: list[str] = []
    limit = int(max_seconds * SAMPLE_RATE) if max_seconds else None
    from rich.progress import Progress

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("scoring", total=len(items))
        for utt in items:
            try:
                wav = load_audio(utt.path)
            except AudioReadError as exc:
                skipped.append(str(exc))
                bar.advance(task)
                continue
            if limit is not None:
                wav = wav[:limit]
            if len(wav) < SAMPLE_RATE // 2:
                # AntiDeepfake skips test audio under 0.5 s; the bundle's min_audio_s says the same
                skipped.append(f"{utt.path}: shorter than 0.5 s")
                bar.advance(task)
                continue
            scored.append(ScoredItem(utt, scorer(wav)))
            bar.advance(task)
    return scored, skipped


def build_report(
    scored: Sequence[ScoredItem], *, model: str, manifest: str, threshold: float = DEFAULT_THRESHOLD
) -> Report:
    if not scored:
        raise ValueError(f"{manifest}: no file could be scored")
    scores = np.array([s.score for s in scored], dtype=np.float64)
    labels = np.array([s.utt.label for s in scored], dtype=np.int64)
    pooled = table_row("pooled", scores, labels, threshold)
    subsets_names = sorted({s.utt.subset for s in scored if s.utt.subset})
    subsets = []
    if len(subsets_names) > 1:
        for name in subsets_names:
            mask = np.array([s.utt.subset == name for s in scored])
            subsets.append(table_row(name, scores[mask], labels[mask], threshold))
    channels = sorted({s.utt.channel for s in scored if s.utt.channel})
    if len(channels) > 1:
        for name in channels:
            mask = np.array([s.utt.channel == name for s in scored])
            subsets.append(table_row(f"channel {name}", scores[mask], labels[mask], threshold))
    systems = []
    real_mask = labels == 1
    for name in sorted({s.utt.system for s in scored if s.utt.label == 0}):
        mask = real_mask | np.array([s.utt.label == 0 and s.utt.system == name for s in scored])
        systems.append(table_row(name, scores[mask], labels[mask], threshold))
    return Report(model, manifest, threshold, pooled, subsets, systems)


def write_scores_csv(path: str | Path, scored: Sequence[ScoredItem]) -> None:
    """Per-file scores: ID, score (logit difference), P(real) as AntiDeepfake writes it, label, system."""
    with Path(path).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ID", "Score", "P_real", "Label", "System", "Subset"])
        for s in scored:
            p_real = 1.0 / (1.0 + math.exp(min(60.0, max(-60.0, s.score))))
            w.writerow(
                [s.utt.uid, f"{s.score:.6f}", f"{p_real:.6f}", s.utt.label, s.utt.system, s.utt.subset]
            )


def evaluate(
    items: Sequence[Utterance],
    scorer: Scorer,
    out_dir: str | Path,
    *,
    model: str,
    manifest: str,
    threshold: float = DEFAULT_THRESHOLD,
    max_seconds: float | None = None,
    progress: bool = True,
) -> Report:
    """Score, build the report, write ``scores.csv``, ``report.json``, ``report.md`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    scored, skipped = score_items(items, scorer, max_seconds=max_seconds, progress=progress)
    report = build_report(scored, model=model, manifest=manifest, threshold=threshold)
    report.skipped = skipped
    report.seconds = time.perf_counter() - t0
    write_scores_csv(out / "scores.csv", scored)
    (out / "report.json").write_text(report.to_json())
    (out / "report.md").write_text(report.to_markdown())
    return report
