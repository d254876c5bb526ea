"""The leave-one-out protocol: folds, per-fold training and scoring, and the report.

Folds:

- **leave one real source out** (``source-<S>``): the supervised model trains without any clip of S (train
  and dev splits); its threshold comes from the dev split without S. Reported: false alarms on every clip of S
  (all splits: none was seen) at that threshold, per channel.
- **leave one synthesizer family out** (``family-<F>``): the supervised model trains without family F.
  Reported: EER of F's clips against the real clips of the eval split (speakers never trained on), per channel
  and per system of F, and the share of F detected at the dev threshold.

Every detector is judged on the same windows (:func:`training.supervised.scoring.score_windows`); a clip's
score is the mean of its window scores, compared with the threshold the way the runtime's summary verdict is.
The one-class bundle is scored as it is (it never trains on synthetic speech; see the config for what that
means for source folds). The fusion is refitted in every fold on that fold's dev windows only. Thresholds: the
``threshold_quantile`` of dev real window scores, per detector and fold.

Robustness: every fold writes ``folds/<fold>/scores.json`` atomically when it is complete, and a rerun skips
complete folds and resumes the training of an interrupted one from its ``last.pt``. A fold that cannot run (no
usable clip of the left-out source, no synthetic data left) is recorded with its reason in the report and the
run goes on; a manifest without one of the classes is refused before any training starts.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation.report import ReportWriter, detection_metrics, pct, pct_ci
from training.fusion.fit import FusionError, fit_logistic_regression
from training.oneclass.data import AudioCache, Clip, DataError, read_manifest, require, select, subsample

from .config import ProtocolConfig, save_protocol_config

DETECTORS = ("oneclass", "supervised", "fusion")
TARGETS = {"pooled_eer": 0.15, "family_eer": 0.30, "false_alarm": 0.10}


@dataclass(frozen=True)
class Fold:
    kind: str  # "source" | "family"
    held_out: str

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.held_out}"


def _atomic_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=float))
    os.replace(tmp, path)


def plan_folds(cfg: ProtocolConfig, clips: list[Clip], manifest: Path) -> list[Fold]:
    """The folds to run; a manifest lacking a class, or a named fold absent from it, is a DataError."""
    real = require(select(clips, None, "real"), "label real (bona fide)", manifest)
    spoof = require(select(clips, None, "spoof"), "label spoof (synthetic)", manifest)
    sources = sorted({c.source for c in real})
    families = sorted({c.family for c in spoof})
    want_s = sources if cfg.source_folds == "auto" else list(cfg.source_folds)
    want_f = families if cfg.family_folds == "auto" else list(cfg.family_folds)
    for s in want_s:
        if s not in sources:
            raise DataError(f"{manifest}: source fold {s!r}: no real clip of that source ({sources})")
    for f in want_f:
        if f not in families:
            raise DataError(f"{manifest}: family fold {f!r}: no synthetic clip of that family ({families})")
    if len(families) < 2 and want_f:
        raise DataError(
            f"{manifest}: leave-one-family-out needs at least two synthesizer families ({families})"
        )
    return [Fold("family", f) for f in want_f] + [Fold("source", s) for s in want_s]


def _per_channel(clips: list[Clip], channels: list[str], limit: int, key: str) -> list[Clip]:
    out: list[Clip] = []
    for ch in channels:
        out.extend(subsample([c for c in clips if c.channel == ch], limit, key=f"{key}|{ch}"))
    return out


class ProtocolRunner:
    """Runs (or resumes) a protocol in ``run_dir``."""

    def __init__(
        self, cfg: ProtocolConfig, supervised_base: Path, run_dir: str | Path, progress: bool = True
    ):
        self.cfg = cfg
        self.supervised_base = Path(supervised_base)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self._oneclass: Any = None
        self._oneclass_cache: dict[Path, np.ndarray] = {}

    # ------------------------------------------------------------------ logging
    def log(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        print(line, file=sys.stderr, flush=True)
        with open(self.run_dir / "protocol.log", "a") as fh:
            fh.write(line + "\n")

    # ------------------------------------------------------------------ detectors
    def oneclass_backend(self) -> Any:
        if self.cfg.oneclass_bundle == "":
            return None
        if self._oneclass is None:
            from stream_guard.backends import OnnxRuntimeBackend

            path = None if self.cfg.oneclass_bundle is None else Path(self.cfg.oneclass_bundle).expanduser()
            self._oneclass = OnnxRuntimeBackend(path, provider="cpu", threads=self.cfg.threads)
        return self._oneclass

    def supervised_config(self, fold: Fold) -> Any:
        from training.supervised.config import load_config

        sup = load_config(self.supervised_base)
        sup.data.manifest = self.cfg.manifest
        sup.data.channels = list(self.cfg.channels)
        sup.train.threads = self.cfg.threads
        sup.scoring.threshold_quantile = self.cfg.threshold_quantile
        if fold.kind == "source":
            sup.data.exclude_sources = sorted(set(sup.data.exclude_sources or []) | {fold.held_out})
        else:
            sup.data.exclude_families = sorted(set(sup.data.exclude_families or []) | {fold.held_out})
        sup.name = f"{sup.name}-{fold.name}"
        return sup

    # ------------------------------------------------------------------ run
    def run(self, only: list[str] | None = None) -> Path:
        cfg = self.cfg
        manifest = Path(cfg.manifest).expanduser()
        saved = ProtocolConfig(**{**cfg.to_dict(), "supervised": str(self.supervised_base.resolve())})
        save_protocol_config(saved, self.run_dir / "protocol.yaml")
        clips = [c for c in read_manifest(manifest) if c.channel in cfg.channels]
        if not clips:
            raise DataError(f"{manifest}: no clip on the channel(s) {cfg.channels}")
        folds = plan_folds(cfg, clips, manifest)
        if only:
            folds = [f for f in folds if f.name in only]
        self.log(f"protocol {cfg.name}: {len(folds)} folds: {', '.join(f.name for f in folds)}")
        for fold in folds:
            fold_dir = self.run_dir / "folds" / fold.name
            done = fold_dir / "scores.json"
            if done.exists():
                recorded = (json.loads(done.read_text()).get("oneclass") or {}).get("sha256")
                if recorded == self.current_oneclass_id():
                    self.log(f"{fold.name}: complete, skipped")
                    continue
                self.log(f"{fold.name}: the one-class bundle changed; rescoring it and refitting the fusion")
            t0 = time.time()
            try:
                self.run_fold(fold, clips, fold_dir)
            except (DataError, FusionError) as exc:
                self.log(f"{fold.name}: cannot be evaluated: {exc}")
                _atomic_json(fold_dir / "error.json", {"fold": fold.name, "error": str(exc)})
            else:
                (fold_dir / "error.json").unlink(missing_ok=True)
                self.log(f"{fold.name}: done in {time.time() - t0:.0f} s")
            self.write_report(folds)
        return self.write_report(folds)

    def run_fold(self, fold: Fold, clips: list[Clip], fold_dir: Path) -> None:
        """Stage 1 (train the supervised model, score dev and reported clips; cached in
        ``supervised_scores.json``), then stage 2 (score the one-class bundle, fit the fusion; written to
        ``scores.json``). Stage 2 alone reruns when the one-class bundle changes: no retraining needed."""
        stage1 = fold_dir / "supervised_scores.json"
        if not stage1.exists():
            self._supervised_stage(fold, clips, fold_dir)
        self._combine_stage(fold, clips, fold_dir)

    def _supervised_stage(self, fold: Fold, clips: list[Clip], fold_dir: Path) -> None:
        from training.supervised.data import load_clips, select_fold
        from training.supervised.scoring import score_windows, torch_scorer
        from training.supervised.trainer import SupervisedTrainer, load_model

        cfg = self.cfg
        manifest = Path(cfg.manifest).expanduser()
        # The sets this fold reports on: checked before any training, so a fold without data costs nothing.
        if fold.kind == "source":
            held = [c for c in clips if c.is_real and c.source == fold.held_out]
            report = _per_channel(held, cfg.channels, cfg.max_report_clips, fold.name)
            require(report, f"real source {fold.held_out!r}", manifest)
        else:
            held = [c for c in clips if not c.is_real and c.family == fold.held_out]
            real = select(clips, cfg.eval_split, "real")
            require(real, f"split {cfg.eval_split!r}, label real (the real side of family folds)", manifest)
            report = _per_channel(held, cfg.channels, cfg.max_report_clips, fold.name) + _per_channel(
                real, cfg.channels, cfg.max_report_clips, "eval-real"
            )
        sup_cfg = self.supervised_config(fold)
        fdata = select_fold(sup_cfg, clips)
        cache = AudioCache(sup_cfg.model.frontend_config().sample_rate)
        warn = self.log
        group = (
            (lambda c: c.source) if fold.kind == "source" else (lambda c: "real" if c.is_real else c.system)
        )
        try:
            report = load_clips(report, cache, f"{fold.name} reported clips", group, warn)
        except DataError:
            raise DataError(
                f"{fold.name}: {fold.kind} {fold.held_out!r} has no usable speech (every clip unreadable or "
                "silent)"
            ) from None
        if fold.kind == "family" and not any(not c.is_real for c in report):
            raise DataError(f"{fold.name}: family {fold.held_out!r} has no usable synthetic clip")
        self.log(f"{fold.name}: training the supervised model ({sup_cfg.train.steps} steps)")
        best = SupervisedTrainer(sup_cfg, fold_dir / "supervised", progress=self.progress).run()
        model, _, info = load_model(best)
        sr = model.frontend.cfg.sample_rate
        dev_real = load_clips(fdata.dev_real, cache, f"{fold.name} dev real", lambda c: c.source, warn)
        dev_spoof = load_clips(fdata.dev_spoof, cache, f"{fold.name} dev synthetic", lambda c: c.system, warn)
        sc = sup_cfg.scoring
        fn = torch_scorer(model)
        out: dict[str, Any] = {
            "window_s": sc.window_s, "min_audio_s": sc.min_audio_s, "sample_rate": sr, "step": info["step"],
            "dev": {k: v for k, v in info["dev"].items() if k != "calibration"},
        }  # fmt: skip
        for set_name, set_clips in (("dev_real", dev_real), ("dev_spoof", dev_spoof), ("report", report)):
            self.log(f"{fold.name}: scoring {len(set_clips)} {set_name} clips with the supervised model")
            w = score_windows(fn, set_clips, cache, sc.window_s, cfg.hop_s, sc.min_audio_s, sr)
            out[set_name] = {str(p): [float(x) for x in v] for p, v in w.items()}
        _atomic_json(fold_dir / "supervised_scores.json", out)

    def _combine_stage(self, fold: Fold, clips: list[Clip], fold_dir: Path) -> None:

        cfg = self.cfg
        st = json.loads((fold_dir / "supervised_scores.json").read_text())
        by_path = {str(c.path): c for c in clips}
        scores: dict[str, dict[str, dict[str, np.ndarray]]] = {
            "supervised": {
                k: {p: np.asarray(v) for p, v in st[k].items()} for k in ("dev_real", "dev_spoof", "report")
            }
        }
        oc = self.oneclass_backend()
        oc_id = None
        if oc is not None:
            from stream_guard.backends.fused import sha256_file

            oc_id = {"path": str(oc.path), "sha256": sha256_file(oc.path), "name": oc.metadata.name}
            if oc.metadata.sample_rate != st["sample_rate"]:
                raise DataError(
                    f"{oc.path}: runs at {oc.metadata.sample_rate} Hz, the corpus at {st['sample_rate']} Hz"
                )
            # The windows the supervised model scored (same window and hop). A clip too short for the
            # one-class minimum gets no one-class score and drops out of every detector's rows.
            min_audio = max(st["min_audio_s"], oc.metadata.min_audio_s)
            cache = AudioCache(st["sample_rate"])
            scores["oneclass"] = {}
            for set_name, sup_set in scores["supervised"].items():
                set_clips = [by_path[p] for p in sup_set if p in by_path]
                self.log(f"{fold.name}: scoring {len(set_clips)} {set_name} clips with the one-class model")
                w = self._score_oneclass(oc, set_clips, cache, st["window_s"], min_audio, st["sample_rate"])
                scores["oneclass"][set_name] = {str(p): v for p, v in w.items()}
        thresholds = {
            name: float(np.quantile(np.concatenate(list(s["dev_real"].values())), cfg.threshold_quantile))
            for name, s in scores.items()
        }
        fusion = None
        if "oneclass" in scores:
            fusion = self._fuse(scores)
            thresholds["fusion"] = fusion["threshold"]
        rows = []
        for path in st["report"]:
            c = by_path.get(path)
            per = {name: s["report"].get(path) for name, s in scores.items()}
            if c is None or any(v is None or len(v) != len(per["supervised"]) for v in per.values()):
                continue
            entry = {
                "path": path, "channel": c.channel, "label": c.label, "system": c.system,
                "family": c.family, "source": c.source, "split": c.split,
                "scores": {k: [float(x) for x in v] for k, v in per.items()},
            }  # fmt: skip
            if fusion is not None:
                w, b = np.asarray(fusion["weights"]), fusion["bias"]
                entry["scores"]["fusion"] = [
                    float(b + w[0] * o + w[1] * s)
                    for o, s in zip(per["oneclass"], per["supervised"], strict=True)
                ]
            rows.append(entry)
        _atomic_json(
            fold_dir / "scores.json",
            {
                "fold": fold.name, "kind": fold.kind, "held_out": fold.held_out, "thresholds": thresholds,
                "fusion": fusion, "supervised_dev": st["dev"], "supervised_step": st["step"], "clips": rows,
                "oneclass": oc_id,
                "dev_counts": {"real": len(st["dev_real"]), "spoof": len(st["dev_spoof"])},
            },
        )  # fmt: skip

    def current_oneclass_id(self) -> str | None:
        oc = self.oneclass_backend()
        if oc is None:
            return None
        from stream_guard.backends.fused import sha256_file

        return sha256_file(oc.path)

    def _score_oneclass(
        self, oc: Any, clips: list[Clip], cache: AudioCache, window_s: float, min_audio_s: float, sr: int
    ) -> dict[Path, np.ndarray]:
        """Window scores of the one-class bundle; each clip is scored once per run (the bundle is the same
        in every fold)."""
        from training.supervised.scoring import score_windows

        todo = [c for c in clips if c.path not in self._oneclass_cache]
        fresh = score_windows(
            lambda a: oc.infer(a)[0], todo, cache, window_s, self.cfg.hop_s, min_audio_s, sr
        )
        for c in todo:
            self._oneclass_cache[c.path] = fresh.get(c.path, np.zeros(0))
        return {c.path: self._oneclass_cache[c.path] for c in clips if self._oneclass_cache[c.path].size}

    def _fuse(self, scores: dict[str, dict[str, dict[Path, np.ndarray]]]) -> dict[str, Any]:
        """Fit the fusion on this fold's dev windows (both detectors scored the same windows)."""
        xs = {}
        for set_name in ("dev_real", "dev_spoof"):
            oc, sup = scores["oneclass"][set_name], scores["supervised"][set_name]
            paths = [p for p in sup if p in oc and len(oc[p]) == len(sup[p])]
            xs[set_name] = (
                np.concatenate([np.c_[oc[p], sup[p]] for p in paths]) if paths else np.zeros((0, 2))
            )
        real, spoof = xs["dev_real"], xs["dev_spoof"]
        fit = fit_logistic_regression(np.r_[real, spoof], np.r_[np.zeros(len(real)), np.ones(len(spoof))])
        threshold = float(np.quantile(fit.logit(real), self.cfg.threshold_quantile))
        return {
            "weights": [float(v) for v in fit.weights], "bias": fit.bias, "threshold": threshold,
            "dev_windows": {"real": len(real), "spoof": len(spoof)},
        }  # fmt: skip

    # ------------------------------------------------------------------ report
    def write_report(self, folds: list[Fold]) -> Path:
        return write_report(self.run_dir, self.cfg, folds)


def _clip_scores(
    rows: list[dict[str, Any]], det: str, channel: str, pred: Callable[[dict], bool]
) -> np.ndarray:
    return np.array(
        [
            float(np.mean(r["scores"][det]))
            for r in rows
            if r["channel"] == channel and pred(r) and det in r["scores"]
        ]
    )


def write_report(run_dir: Path, cfg: ProtocolConfig, folds: list[Fold]) -> Path:
    """report.md + metrics.json + DET plots from the complete folds (pending and failed folds are listed)."""
    done: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for fold in folds:
        d = run_dir / "folds" / fold.name
        if (d / "scores.json").exists():
            done[fold.name] = json.loads((d / "scores.json").read_text())
        elif (d / "error.json").exists():
            failed[fold.name] = json.loads((d / "error.json").read_text())["error"]
    rep = ReportWriter(run_dir, f"Leave-one-out evaluation: {cfg.name}")
    dets = [d for d in DETECTORS if any(d in f["thresholds"] for f in done.values())]
    pending = [f.name for f in folds if f.name not in done and f.name not in failed]
    rep.text(
        f"Manifest `{cfg.manifest}`; channels {', '.join(cfg.channels)}; one-class bundle "
        f"`{cfg.oneclass_bundle if cfg.oneclass_bundle is not None else 'embedded default'}`. "
        f"Clip score = mean of window scores ({cfg.hop_s:g} s hop); thresholds = "
        f"{100 * cfg.threshold_quantile:g}th "
        "percentile of each fold's dev real windows; EER intervals: bootstrap 95 % ("
        f"{cfg.n_boot} resamples); rate intervals: Wilson 95 %. Folds complete: {len(done)} of {len(folds)}"
        + (f"; pending: {', '.join(pending)}" if pending else "")
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + "."
    )
    for name, err in failed.items():
        rep.text(f"- **{name}** could not be evaluated: {err}")
    metrics: dict[str, Any] = {
        "config": cfg.to_dict(),
        "folds": {},
        "pooled": {},
        "targets": {},
        "failed": failed,
    }
    fam_folds = {k: v for k, v in done.items() if v["kind"] == "family"}
    src_folds = {k: v for k, v in done.items() if v["kind"] == "source"}
    for det in dets:
        # ---- leave one family out
        rows_t, curves = [], {}
        for ch in cfg.channels:
            pooled_r, pooled_s = [], []
            for name, f in fam_folds.items():
                if det not in f["thresholds"]:
                    continue
                thr = f["thresholds"][det]
                r = _clip_scores(f["clips"], det, ch, lambda x: x["label"] == "real")
                s = _clip_scores(f["clips"], det, ch, lambda x: x["label"] == "spoof")
                m = detection_metrics(r, s, thr, n_boot=cfg.n_boot)
                metrics["folds"].setdefault(name, {}).setdefault(det, {})[ch] = m
                rows_t.append([f"{f['held_out']} ({ch})", *ReportWriter.detection_rows(rep, {"": m})[0][1:]])
                systems = sorted({x["system"] for x in f["clips"] if x["label"] == "spoof"})
                if len(systems) > 1:
                    for sys_name in systems:
                        ss = _clip_scores(f["clips"], det, ch, lambda x, n=sys_name: x["system"] == n)
                        if ss.size and r.size:
                            ms = detection_metrics(r, ss, thr, n_boot=cfg.n_boot)
                            metrics["folds"][name][det][f"{ch}/{sys_name}"] = ms
                            rows_t.append(
                                [f"  {sys_name} ({ch})", *ReportWriter.detection_rows(rep, {"": ms})[0][1:]]
                            )
                pooled_r.append(r - thr)
                pooled_s.append(s - thr)
            if pooled_r:
                pr, ps = np.concatenate(pooled_r), np.concatenate(pooled_s)
                if pr.size and ps.size:
                    m = detection_metrics(pr, ps, 0.0, n_boot=cfg.n_boot)
                    metrics["pooled"].setdefault(det, {})[ch] = m
                    rows_t.append([f"**pooled** ({ch})", *ReportWriter.detection_rows(rep, {"": m})[0][1:]])
                    curves[f"{det} {ch}"] = (pr, ps)
        if rows_t:
            rep.table(f"{det}: leave one synthesizer family out", ReportWriter.DETECTION_HEADERS, rows_t)
            rep.det_plot(f"det-{det}.png", curves, f"{det}: left-out families (pooled)")
        # ---- leave one source out
        rows_s = []
        for name, f in src_folds.items():
            if det not in f["thresholds"]:
                continue
            for ch in cfg.channels:
                r = _clip_scores(f["clips"], det, ch, lambda x: x["label"] == "real")
                if not r.size:
                    rows_s.append([f"{f['held_out']} ({ch})", "0", "no usable clip on this channel"])
                    continue
                m = detection_metrics(r, np.zeros(0), f["thresholds"][det], n_boot=cfg.n_boot)
                metrics["folds"].setdefault(name, {}).setdefault(det, {})[ch] = m
                rows_s.append(
                    [
                        f"{f['held_out']} ({ch})",
                        str(m["n_real"]),
                        pct_ci(m["false_alarm"], m["false_alarm_ci"]),
                    ]
                )
        if rows_s:
            note = " (one-class bundle not retrained per fold)" if det != "supervised" else ""
            rep.table(
                f"{det}: leave one real source out{note}",
                ("left-out source", "clips", "false alarms [95 % CI]"),
                rows_s,
            )
    # ---- targets
    lines = []
    for det in dets:
        t: dict[str, Any] = {}
        pooled = [m["eer"] for m in metrics["pooled"].get(det, {}).values() if "eer" in m]
        fam = [m["eer"] for fn, fm in metrics["folds"].items() if fn.startswith("family-")
               for ch, m in fm.get(det, {}).items() if "/" not in ch and "eer" in m]  # fmt: skip
        fa = [m["false_alarm"] for fn, fm in metrics["folds"].items() if fn.startswith("source-")
              for m in fm.get(det, {}).values() if "false_alarm" in m]  # fmt: skip
        if pooled:
            t["pooled_eer"] = max(pooled)
        if fam:
            t["family_eer"] = max(fam)
        if fa:
            t["false_alarm"] = max(fa)
        metrics["targets"][det] = t
        parts = []
        for key, label in (("pooled_eer", "worst pooled EER"), ("family_eer", "worst family EER"),
                           ("false_alarm", "worst left-out-source false alarms")):  # fmt: skip
            if key in t:
                ok = t[key] < TARGETS[key]
                parts.append(f"{label} {pct(t[key])} ({'meets' if ok else 'misses'} < {pct(TARGETS[key])})")
        if parts:
            lines.append(f"- **{det}**: " + "; ".join(parts))
    if lines:
        rep.text("### Targets (worst channel)\n\n" + "\n".join(lines))
    fus = {k: v["fusion"] for k, v in done.items() if v.get("fusion")}
    if fus:
        rep.table(
            "Fusion weights per fold (z = bias + w_oneclass * s_oneclass + w_supervised * s_supervised)",
            ("fold", "w_oneclass", "w_supervised", "bias", "threshold"),
            [[k, *(f"{x:.4g}" for x in (*v["weights"], v["bias"], v["threshold"]))] for k, v in fus.items()],
        )  # fmt: skip
    rep.metrics = metrics
    md, _ = rep.write()
    return md


def summary_markdown(run_dir: Path) -> str:
    """Compact tables for the documentation from a run's ``metrics.json``: per detector and channel, the
    pooled EER of the left-out families, each family's EER, and the false alarms on each left-out source."""
    m = json.loads((Path(run_dir) / "metrics.json").read_text())
    channels = m["config"]["channels"]
    dets = [d for d in DETECTORS if d in m["pooled"] or any(d in f for f in m["folds"].values())]
    fams = sorted(k for k in m["folds"] if k.startswith("family-"))
    srcs = sorted(k for k in m["folds"] if k.startswith("source-"))
    out = []
    if fams:
        head = ["detector", "channel", "pooled EER [95 % CI]"] + [f.removeprefix("family-") for f in fams]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for d in dets:
            for ch in channels:
                pooled = m["pooled"].get(d, {}).get(ch, {})
                cells = [d, ch, pct_ci(pooled.get("eer"), pooled.get("eer_ci"))]
                for f in fams:
                    fm = m["folds"][f].get(d, {}).get(ch, {})
                    cells.append(pct_ci(fm.get("eer"), fm.get("eer_ci")))
                out.append("| " + " | ".join(cells) + " |")
        out.append("")
    if srcs:
        head = ["detector", "channel"] + [f.removeprefix("source-") for f in srcs]
        out += ["False alarms on each left-out real source at the fold's dev threshold [95 % CI]:", ""]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for d in dets:
            for ch in channels:
                cells = [d, ch]
                for f in srcs:
                    fm = m["folds"][f].get(d, {}).get(ch, {})
                    cells.append(pct_ci(fm.get("false_alarm"), fm.get("false_alarm_ci")))
                out.append("| " + " | ".join(cells) + " |")
        out.append("")
    if m.get("failed"):
        out += [f"- fold {k} could not be evaluated: {v}" for k, v in m["failed"].items()]
    return "\n".join(out) + "\n"
