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
One-class bundles (one or several, each a row) are scored as they are (they never train on synthetic speech;
a source fold is left out for a bundle only if the bundle did not train on that source, which the report
marks from the bundle's provenance); a row may name a bundle per source fold (a path with ``{source}``: a
one-class model retrained without that source), scored in that source fold, the embedded default in family
folds. The fusion of one of them with the supervised model is refitted in every
fold on that fold's dev windows only. Thresholds: the ``threshold_quantile`` of dev real window scores, per
detector and fold.

Robustness: every fold writes ``folds/<fold>/scores.json`` atomically when it is complete, and a rerun skips
complete folds and resumes the training of an interrupted one from its ``last.pt``; when the set of one-class
bundles changes, only the scoring of the one-class rows and the fusion rerun (window scores of each bundle are
kept per bundle SHA-256 in ``oneclass_cache/``, so adding a bundle scores only that bundle). A fold that
cannot run (no usable clip of the left-out source, no synthetic data left) is recorded with its reason in the
report and the run goes on; a manifest without one of the classes is refused before any training starts.
"""

from __future__ import annotations

import json
import os
import re
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

from .config import ProtocolConfig, fold_bundle, is_template, save_protocol_config

DETECTORS = ("oneclass", "supervised", "fusion")  # the rows of a run with one one-class bundle
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


_SOURCE_HOURS = re.compile(r"([A-Za-z0-9_.-]+) [0-9.]+ h\b")


def trained_sources(training: dict[str, Any] | None) -> list[str] | None:
    """The real sources a one-class bundle trained on, from its provenance (``training.data`` lists them as
    ``"... (asterisk 5.73 h, fillets_cs 2.36 h); ..."``); None when the bundle does not say."""
    text = str((training or {}).get("data", ""))
    found = _SOURCE_HOURS.findall(text)
    return sorted(set(found)) if found else None


def _recorded_rows(scores: dict[str, Any]) -> dict[str, Any]:
    """What a complete fold was scored with (see :meth:`ProtocolRunner.current_rows`); folds written before
    several bundles were supported recorded one bundle under ``oneclass``."""
    if "oneclass_bundles" in scores:
        return {
            "bundles": {n: d["sha256"] for n, d in scores["oneclass_bundles"].items()},
            "fusion": scores.get("fusion_oneclass"),
        }
    one = scores.get("oneclass")
    return (
        {"bundles": {"oneclass": one["sha256"]}, "fusion": "oneclass"}
        if one
        else {"bundles": {}, "fusion": None}
    )


def held_out_trained(fold: dict[str, Any], det: str) -> bool | None:
    """Whether detector ``det`` trained on the source a source fold leaves out (True: the fold's figure is
    not a left-out one for it; None: unknown). The supervised model is retrained per fold (never); the fusion
    inherits its one-class partner."""
    if det == "supervised" or fold.get("kind") != "source":
        return False
    bundles = fold.get("oneclass_bundles") or ({"oneclass": fold["oneclass"]} if fold.get("oneclass") else {})
    name = (fold.get("fusion_oneclass") or "oneclass") if det == "fusion" else det
    info = bundles.get(name)
    if info is None or info.get("trained_sources") is None:
        return None
    return fold["held_out"] in info["trained_sources"]


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
        self._backends: dict[str, Any] = {}
        self._ids: dict[str, dict[str, Any]] = {}
        self._caches: dict[str, dict[str, list[float]]] = {}

    # ------------------------------------------------------------------ logging
    def log(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        print(line, file=sys.stderr, flush=True)
        with open(self.run_dir / "protocol.log", "a") as fh:
            fh.write(line + "\n")

    # ------------------------------------------------------------------ detectors
    def row_bundles(self, fold: Fold | None = None) -> dict[str, str | None]:
        """Row name -> the bundle path it scores in ``fold`` (None = the embedded default), in table order.
        A templated row whose source-fold bundle does not exist (yet) is left out of that fold; without a
        fold, the rows every fold shares (a templated row as in family folds)."""
        out: dict[str, str | None] = {}
        for name, bundle in self.cfg.bundles().items():
            if fold is None:
                out[name] = fold_bundle(bundle, "family", "")
                continue
            path = fold_bundle(bundle, fold.kind, fold.held_out)
            if is_template(bundle) and path is not None and not Path(path).expanduser().is_file():
                continue
            out[name] = path
        return out

    def _backend(self, name: str, bundle: str | None) -> Any:
        from stream_guard.backends import OnnxRuntimeBackend
        from stream_guard.backends.base import BackendError
        from stream_guard.bundle import BundleError, default_bundle_path

        # None: the embedded one-class bundle (the member of the default fused pair whose map users see),
        # not the default model, which is the fused pair itself.
        path = default_bundle_path() if bundle is None else Path(bundle).expanduser()
        key = str(path)
        if key not in self._backends:
            try:
                self._backends[key] = OnnxRuntimeBackend(path, provider="cpu", threads=self.cfg.threads)
            except (BundleError, BackendError, OSError) as exc:
                raise DataError(f"one-class row {name!r}: bundle {bundle or 'embedded'}: {exc}") from None
        return self._backends[key]

    def oneclass_backends(self, fold: Fold | None = None) -> dict[str, Any]:
        """Row name -> loaded bundle for ``fold``, in table order (empty: no one-class model)."""
        return {name: self._backend(name, b) for name, b in self.row_bundles(fold).items()}

    def oneclass_ids(self, fold: Fold | None = None) -> dict[str, dict[str, Any]]:
        """Row name -> ``{path, sha256, name, trained_sources}`` of each bundle ``fold`` scores (what a rerun
        compares)."""
        from stream_guard.backends.fused import sha256_file

        out = {}
        for name, oc in self.oneclass_backends(fold).items():
            key = str(oc.path)
            if key not in self._ids:
                self._ids[key] = {
                    "path": str(oc.path), "sha256": sha256_file(oc.path), "name": oc.metadata.name,
                    "trained_sources": trained_sources(oc.metadata.training),
                }  # fmt: skip
            out[name] = self._ids[key]
        return out

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
        # every one-class bundle loads (or is named in an error) before any training
        for fold in folds:
            ids = self.oneclass_ids(fold)
            missing = [n for n in self.cfg.bundles() if n not in ids]
            if missing:
                self.log(f"{fold.name}: no bundle yet for the per-fold row(s) {missing}; scored without them")
        for fold in folds:
            fold_dir = self.run_dir / "folds" / fold.name
            done = fold_dir / "scores.json"
            if done.exists():
                prev = json.loads(done.read_text())
                if _recorded_rows(prev) == self.current_rows(fold):
                    self.log(f"{fold.name}: complete, skipped")
                    continue
                self.log(
                    f"{fold.name}: the one-class bundles changed; rescoring them and refitting the fusion"
                )
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
        backends = self.oneclass_backends(fold)
        ids = self.oneclass_ids(fold)
        # The windows the supervised model scored (same window and hop). A clip too short for a one-class
        # minimum gets no score there and drops out of every detector's rows, so all rows see the same clips.
        min_audio = max([st["min_audio_s"], *(oc.metadata.min_audio_s for oc in backends.values())])
        cache = AudioCache(st["sample_rate"])
        for name, oc in backends.items():
            if oc.metadata.sample_rate != st["sample_rate"]:
                raise DataError(
                    f"{oc.path}: runs at {oc.metadata.sample_rate} Hz, the corpus at {st['sample_rate']} Hz"
                )
            scores[name] = {}
            for set_name, sup_set in scores["supervised"].items():
                set_clips = [by_path[p] for p in sup_set if p in by_path]
                w = self._score_oneclass(
                    name, ids[name]["sha256"], oc, set_clips, cache, st["window_s"], min_audio,
                    st["sample_rate"], fold.name,
                )  # fmt: skip
                scores[name][set_name] = w
            self._save_cache(ids[name]["sha256"], st["window_s"], min_audio)
        thresholds = {
            name: float(np.quantile(np.concatenate(list(s["dev_real"].values())), cfg.threshold_quantile))
            for name, s in scores.items()
        }
        partner = cfg.fusion_partner()
        if partner is not None and partner not in scores:
            self.log(f"{fold.name}: no fusion (its one-class row {partner!r} has no bundle in this fold)")
            partner = None
        fusion = None
        if partner is not None:
            fusion = self._fuse(scores, partner)
            fusion["oneclass"] = partner
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
                    for o, s in zip(per[partner], per["supervised"], strict=True)
                ]
            rows.append(entry)
        _atomic_json(
            fold_dir / "scores.json",
            {
                "fold": fold.name, "kind": fold.kind, "held_out": fold.held_out, "thresholds": thresholds,
                "fusion": fusion, "supervised_dev": st["dev"], "supervised_step": st["step"], "clips": rows,
                "oneclass": ids.get(partner) if partner else None, "oneclass_bundles": ids,
                "fusion_oneclass": partner,
                "dev_counts": {"real": len(st["dev_real"]), "spoof": len(st["dev_spoof"])},
            },
        )  # fmt: skip

    def current_rows(self, fold: Fold) -> dict[str, Any]:
        """What a complete fold must have been scored with: each bundle's SHA-256 and the fusion partner."""
        ids = self.oneclass_ids(fold)
        partner = self.cfg.fusion_partner()
        return {
            "bundles": {name: i["sha256"] for name, i in ids.items()},
            "fusion": partner if partner in ids else None,
        }

    def _cache_file(self, sha: str, window_s: float, min_audio_s: float) -> Path:
        tag = f"w{window_s:g}-h{self.cfg.hop_s:g}-m{min_audio_s:g}"
        return self.run_dir / "oneclass_cache" / f"{sha[:16]}-{tag}.json"

    def _cache(self, sha: str, window_s: float, min_audio_s: float) -> dict[str, list[float]]:
        key = str(self._cache_file(sha, window_s, min_audio_s))
        if key not in self._caches:
            path = Path(key)
            self._caches[key] = json.loads(path.read_text()) if path.exists() else {}
        return self._caches[key]

    def _save_cache(self, sha: str, window_s: float, min_audio_s: float) -> None:
        path = self._cache_file(sha, window_s, min_audio_s)
        _atomic_json(path, self._cache(sha, window_s, min_audio_s))

    def _score_oneclass(
        self, name: str, sha: str, oc: Any, clips: list[Clip], cache: AudioCache, window_s: float,
        min_audio_s: float, sr: int, fold_name: str,
    ) -> dict[str, np.ndarray]:  # fmt: skip
        """Window scores of one bundle (``sha``: its SHA-256); each clip is scored once per bundle and run
        (kept on disk), whichever row or fold asks."""
        from training.supervised.scoring import score_windows

        known = self._cache(sha, window_s, min_audio_s)
        todo = [c for c in clips if str(c.path) not in known]
        if todo:
            self.log(f"{fold_name}: scoring {len(todo)} clips with the one-class row {name!r}")
            fresh = score_windows(
                lambda a: oc.infer(a)[0], todo, cache, window_s, self.cfg.hop_s, min_audio_s, sr
            )
            for c in todo:
                known[str(c.path)] = [float(x) for x in fresh.get(c.path, np.zeros(0))]
        return {str(c.path): np.asarray(known[str(c.path)]) for c in clips if known[str(c.path)]}

    def _fuse(self, scores: dict[str, dict[str, dict[str, np.ndarray]]], partner: str) -> dict[str, Any]:
        """Fit the fusion of ``partner`` and the supervised model on this fold's dev windows (both scored
        the same windows)."""
        xs = {}
        for set_name in ("dev_real", "dev_spoof"):
            oc, sup = scores[partner][set_name], scores["supervised"][set_name]
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
    dets = [d for d in cfg.detectors() if any(d in f["thresholds"] for f in done.values())]
    pending = [f.name for f in folds if f.name not in done and f.name not in failed]
    rows_desc = ", ".join(
        f"`{n}` = "
        + (f"{b} in source folds, the embedded default in family folds" if is_template(b) else "")
        + ("" if is_template(b) else b or "the embedded default")
        for n, b in cfg.bundles().items()
    )
    partner = cfg.fusion_partner()
    rep.text(
        f"Manifest `{cfg.manifest}`; channels {', '.join(cfg.channels)}; "
        f"one-class rows: {rows_desc or 'none'}"
        + (f"; fusion = `{partner}` + supervised" if partner else "")
        + ". "
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
        "detectors": dets,
        "trained_on_held_out": {},
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
                trained = held_out_trained(f, det)
                metrics["trained_on_held_out"].setdefault(det, {})[f["held_out"]] = trained
                rows_s.append(
                    [
                        f"{f['held_out']} ({ch})",
                        str(m["n_real"]),
                        pct_ci(m["false_alarm"], m["false_alarm_ci"]),
                        {True: "no (trained on it)", False: "yes", None: "unknown"}[trained],
                    ]
                )
        if rows_s:
            note = ""
            if det in cfg.bundles() or det == "fusion":
                row = cfg.fusion_partner() if det == "fusion" else det
                note = (
                    " (a one-class bundle retrained without each source)"
                    if is_template(cfg.bundles().get(row or ""))
                    else " (one-class bundles are not retrained per fold)"
                )
            rep.table(
                f"{det}: leave one real source out{note}",
                ("left-out source", "clips", "false alarms [95 % CI]", "left out for this detector"),
                rows_s,
            )
    # ---- targets
    lines = []
    for det in dets:
        t: dict[str, Any] = {}
        pooled = [m["eer"] for m in metrics["pooled"].get(det, {}).values() if "eer" in m]
        fam = [m["eer"] for fn, fm in metrics["folds"].items() if fn.startswith("family-")
               for ch, m in fm.get(det, {}).items() if "/" not in ch and "eer" in m]  # fmt: skip
        # False-alarm target: only sources the detector never trained on count as left out.
        fa = [m["false_alarm"] for fn, fm in metrics["folds"].items() if fn.startswith("source-")
              and not metrics["trained_on_held_out"].get(det, {}).get(fn.removeprefix("source-"))
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
        if "false_alarm" not in t and src_folds and det in metrics["trained_on_held_out"]:
            parts.append("no left-out-source false alarms (it trained on every source of the source folds)")
        if parts:
            lines.append(f"- **{det}**: " + "; ".join(parts))
    if lines:
        rep.text("### Targets (worst channel)\n\n" + "\n".join(lines))
    fus = {k: v["fusion"] for k, v in done.items() if v.get("fusion")}
    if fus:
        rep.table(
            f"Fusion weights per fold (z = bias + w_oneclass * s_{partner or 'oneclass'} + w_supervised * "
            "s_supervised)",
            ("fold", "w_oneclass", "w_supervised", "bias", "threshold"),
            [[k, *(f"{x:.4g}" for x in (*v["weights"], v["bias"], v["threshold"]))] for k, v in fus.items()],
        )  # fmt: skip
    rep.metrics = metrics
    md, _ = rep.write()
    return md


def summary_markdown(run_dir: Path, detectors: list[str] | None = None) -> str:
    """Compact tables for the documentation from a run's ``metrics.json``: per detector and channel, the
    pooled EER of the left-out families, each family's EER, and the false alarms on each left-out source
    (every detector of the run, or ``detectors`` in that order; an unknown name is a DataError)."""
    m = json.loads((Path(run_dir) / "metrics.json").read_text())
    channels = m["config"]["channels"]
    order = m.get("detectors", DETECTORS)
    dets = [d for d in order if d in m["pooled"] or any(d in f for f in m["folds"].values())]
    if detectors:
        unknown = [d for d in detectors if d not in dets]
        if unknown:
            raise DataError(f"{run_dir}: no detector {unknown} in this run ({dets})")
        dets = list(detectors)
    trained = m.get("trained_on_held_out", {})
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
        out += [
            "False alarms on each left-out real source at the fold's dev threshold [95 % CI]; †: the "
            "detector (for the fusion: its one-class member) trained on that source, so the figure is not a "
            "left-out one:",
            "",
        ]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for d in dets:
            for ch in channels:
                cells = [d, ch]
                for f in srcs:
                    fm = m["folds"][f].get(d, {}).get(ch, {})
                    cell = pct_ci(fm.get("false_alarm"), fm.get("false_alarm_ci"))
                    if trained.get(d, {}).get(f.removeprefix("source-")):
                        cell += " †"
                    cells.append(cell)
                out.append("| " + " | ".join(cells) + " |")
        out.append("")
    if m.get("failed"):
        out += [f"- fold {k} could not be evaluated: {v}" for k, v in m["failed"].items()]
    return "\n".join(out) + "\n"
