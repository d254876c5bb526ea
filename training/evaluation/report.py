"""Evaluation reports in a run folder: ``report.md`` for people, ``metrics.json`` for machines, PNG plots.

Detector-agnostic: callers pass scores and labels (1 = spoof) and get tables of EER (with bootstrap 95 % CI),
AUC, false-alarm rate on real speech and detection rate at a given threshold. Everything is written atomically
so an interrupted evaluation never leaves a half report that looks complete.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import auc, bootstrap_ci, det_curve, detection_rate, eer, false_alarm_rate, proportion_ci


def _atomic_write(path: Path, text: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(text.encode() if isinstance(text, str) else text)
    os.replace(tmp, path)


def pct(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f} %"


def pct_ci(x: float | None, ci: Sequence[float] | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if not ci or any(math.isnan(v) for v in ci):
        return pct(x)
    return f"{100 * x:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def detection_metrics(
    real: np.ndarray, spoof: np.ndarray, threshold: float | None = None, n_boot: int = 200, seed: int = 0
) -> dict[str, Any]:
    """EER / AUC with bootstrap CIs and, at ``threshold``, false-alarm and detection rates with Wilson CIs."""
    real = np.asarray(real, dtype=np.float64)
    spoof = np.asarray(spoof, dtype=np.float64)
    out: dict[str, Any] = {"n_real": int(real.size), "n_spoof": int(spoof.size)}
    if real.size and spoof.size:
        s = np.r_[real, spoof]
        y = np.r_[np.zeros(real.size), np.ones(spoof.size)]
        out["eer"] = eer(s, y)
        out["eer_ci"] = list(bootstrap_ci(eer, s, y, n_boot=n_boot, seed=seed))
        out["auc"] = auc(s, y)
        out["auc_ci"] = list(bootstrap_ci(auc, s, y, n_boot=n_boot, seed=seed))
    if threshold is not None:
        out["threshold"] = float(threshold)
        if real.size:
            out["false_alarm"] = false_alarm_rate(real, threshold)
            out["false_alarm_ci"] = list(proportion_ci(int(np.sum(real >= threshold)), real.size))
        if spoof.size:
            out["detected"] = detection_rate(spoof, threshold)
            out["detected_ci"] = list(proportion_ci(int(np.sum(spoof >= threshold)), spoof.size))
    return out


@dataclass
class ReportWriter:
    """Collects sections and writes ``report.md``, ``metrics.json`` and plots into ``run_dir``."""

    run_dir: Path
    title: str
    lines: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def text(self, md: str) -> None:
        self.lines.append(md.rstrip() + "\n")

    def table(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.lines.append(f"### {title}\n")
        self.lines.append("| " + " | ".join(headers) + " |")
        self.lines.append("|" + "---|" * len(headers))
        for r in rows:
            self.lines.append("| " + " | ".join(str(c) for c in r) + " |")
        self.lines.append("")

    def detection_rows(self, groups: dict[str, dict[str, Any]]) -> list[list[str]]:
        """Table rows (name, n, EER [CI], AUC, false alarms, detected) from :func:`detection_metrics`
        dicts."""
        rows = []
        for name, m in groups.items():
            rows.append(
                [
                    name,
                    f"{m.get('n_real', 0)} / {m.get('n_spoof', 0)}",
                    pct_ci(m.get("eer"), m.get("eer_ci")),
                    f"{m['auc']:.3f}" if "auc" in m else "n/a",
                    pct_ci(m.get("false_alarm"), m.get("false_alarm_ci")),
                    pct_ci(m.get("detected"), m.get("detected_ci")),
                ]
            )
        return rows

    DETECTION_HEADERS = (
        "set",
        "real / spoof",
        "EER [95 % CI]",
        "AUC",
        "false alarms at threshold",
        "detected",
    )

    def det_plot(self, filename: str, curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> Path:
        """DET curves (probit axes) of ``{label: (real_scores, spoof_scores)}``."""
        import matplotlib

        matplotlib.use("Agg")
        from statistics import NormalDist

        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 5.5))
        for label, (real, spoof) in curves.items():
            if len(real) == 0 or len(spoof) == 0:
                continue
            s = np.r_[real, spoof]
            y = np.r_[np.zeros(len(real)), np.ones(len(spoof))]
            x, m = det_curve(s, y)
            ax.plot(x, m, label=f"{label} (EER {100 * eer(s, y):.1f} %)")
        nd = NormalDist()
        ticks = [0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8]
        z = [nd.inv_cdf(t) for t in ticks]
        ax.set_xticks(z, [f"{100 * t:g}" for t in ticks])
        ax.set_yticks(z, [f"{100 * t:g}" for t in ticks])
        lim = (nd.inv_cdf(0.005), nd.inv_cdf(0.95))
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.plot(lim, lim, color="grey", lw=0.5, ls="--")
        ax.set_xlabel("false alarm rate on real speech (%)")
        ax.set_ylabel("miss rate on synthetic speech (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        path = self.run_dir / filename
        fig.savefig(path, dpi=110)
        plt.close(fig)
        self.lines.append(f"![{title}]({filename})\n")
        return path

    def image(self, filename: str, caption: str) -> None:
        self.lines.append(f"![{caption}]({filename})\n")

    def write(self, stem: str = "report") -> tuple[Path, Path]:
        md = self.run_dir / f"{stem}.md"
        js = self.run_dir / ("metrics.json" if stem == "report" else f"{stem}.json")
        _atomic_write(md, f"# {self.title}\n\n" + "\n".join(self.lines) + "\n")
        _atomic_write(js, json.dumps(self.metrics, indent=2, sort_keys=True, default=float) + "\n")
        return md, js
