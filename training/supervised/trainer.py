"""Training loop of the supervised companion: class-balanced crops, the same augmentation on both classes,
checkpoint selection on the dev split.

- Every batch is half real, half synthetic (:class:`~training.supervised.data.BalancedSampler`), and the
  *same* augmenter (:func:`training.augment.build_augmenter`, the run's ``augment`` section: preset ``full``
  or ``compact``, the same section as the one-class trainer's) is applied to both halves: telephone band,
  codecs, noise, level and reverberation then describe neither class, so the model cannot learn
  "narrowband = real" or "clean = synthetic".
- Clips arrive trimmed and level-normalised from the corpus builder, and the front end normalises level and
  floors the log, so silence and level are no shortcut either.
- Loss: binary cross-entropy on the window score (mean of the time track) with light label smoothing.
- Selection: every ``eval_every`` steps the model scores the dev split (dev real speakers vs the dev holdout
  of the training synthesizers); the lowest dev EER wins, ties (an in-domain dev set is often separated
  perfectly) broken by the lower dev window cross-entropy. The threshold (a quantile of dev real *window*
  scores) and the logistic calibration come from the same dev pass. The reported splits are never looked at.
- Resumable: ``last.pt`` (atomic, checksummed; :mod:`training.oneclass.checkpoint`) holds model, optimiser,
  step, history and the best key every ``checkpoint_every`` steps. Crops, augmentation and dropout are seeded
  by the step, so a resumed run replays exactly the batches the killed one would have seen.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from training.augment import build_augmenter, preset_name
from training.evaluation.metrics import eer
from training.oneclass.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from training.oneclass.data import AudioCache, DataError
from training.oneclass.scoring import calibration_from_windows
from training.oneclass.trainer import git_commit

from .config import SupRunConfig, config_from_dict, save_config
from .data import BalancedSampler, FoldData, load_clips, select_fold
from .model import SupervisedDetector
from .scoring import score_windows, torch_scorer

KIND_LAST = "stream-guard/supervised-last"
KIND_BEST = "stream-guard/supervised"


def log(run_dir: Path, message: str, echo: bool = True) -> None:
    line = f"{time.strftime('%H:%M:%S')} {message}"
    if echo:
        print(line, file=sys.stderr, flush=True)
    with open(run_dir / "train.log", "a") as fh:
        fh.write(line + "\n")


def data_summary(cfg: SupRunConfig, fold: FoldData) -> dict[str, str]:
    """Provenance and licence text for the bundle, from what was really trained on."""
    from collections import Counter

    real_h: Counter[str] = Counter()
    spoof_n: Counter[str] = Counter()
    licences: Counter[str] = Counter()
    for c in fold.train_real:
        real_h[c.source or "unknown"] += c.duration / 3600
        licences[c.licence or "unknown"] += 1
    for c in fold.train_spoof:
        spoof_n[c.system or "unknown"] += 1
        licences[c.licence or "unknown"] += 1
    real = ", ".join(f"{k} {v:.2f} h" for k, v in sorted(real_h.items()))
    spoof = ", ".join(f"{k} {v}" for k, v in sorted(spoof_n.items()))
    left = []
    if cfg.data.exclude_sources:
        left.append(f"real sources left out: {cfg.data.exclude_sources}")
    if cfg.data.exclude_families:
        left.append(f"spoof families left out: {cfg.data.exclude_families}")
    return {
        "data": (
            f"{len(fold.train_real)} real clips ({real}) vs {len(fold.train_spoof)} synthetic clips "
            f"({spoof}) "
            f"from {cfg.data.manifest}; "
            + (
                f"augmentation on both classes (preset {preset_name(cfg.augment)})"
                if cfg.augment.enabled
                else "no augmentation"
            )
            + ("; " + "; ".join(left) if left else "")
        ),
        "licence": "weights derived from training audio under: " + "; ".join(sorted(licences)),
    }


def evaluate_dev(
    model: SupervisedDetector, fold: FoldData, cache: AudioCache, cfg: SupRunConfig
) -> dict[str, Any]:
    """Dev EER (clip = mean window logit), window cross-entropy and the calibration, from one dev pass."""
    sc = cfg.scoring
    sr = model.frontend.cfg.sample_rate
    scorer = torch_scorer(model)
    real = score_windows(
        scorer, fold.dev_real, cache, sc.window_s, sc.hop_s, sc.min_audio_s, sr, sc.batch_size
    )
    spoof = score_windows(
        scorer, fold.dev_spoof, cache, sc.window_s, sc.hop_s, sc.min_audio_s, sr, sc.batch_size
    )
    if not real or not spoof:
        raise DataError("dev split: no clip long enough to score in one of the classes")
    r = np.array([v.mean() for v in real.values()])
    s = np.array([v.mean() for v in spoof.values()])
    rw = np.concatenate(list(real.values()))
    sw = np.concatenate(list(spoof.values()))
    logits = torch.from_numpy(np.r_[rw, sw])
    target = torch.from_numpy(np.r_[np.zeros(len(rw)), np.ones(len(sw))])
    bce = float(F.binary_cross_entropy_with_logits(logits, target))
    cal = calibration_from_windows(rw, sw, sc.threshold_quantile)
    cal["fitted_on"] = (
        f"threshold: {100 * sc.threshold_quantile:g}th percentile of {len(rw)} dev real windows ({len(r)} "
        f"clips of speakers never trained on); probability: logistic fit of those vs {len(sw)} windows of "
        "held-out clips of the training synthesizers"
    )
    return {
        "eer": eer(np.r_[r, s], np.r_[np.zeros(len(r)), np.ones(len(s))]),
        "bce": bce, "n_real": len(r), "n_spoof": len(s), "calibration": cal,
    }  # fmt: skip


class SupervisedTrainer:
    """Runs (or resumes) one supervised training run in ``run_dir``."""

    def __init__(self, cfg: SupRunConfig, run_dir: str | Path, progress: bool = True) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.last_path = self.run_dir / "last.pt"
        self.best_path = self.run_dir / "best.pt"

    def _log(self, message: str) -> None:
        log(self.run_dir, message, echo=True)

    def _load_data(self) -> tuple[FoldData, AudioCache]:
        cfg = self.cfg
        fold = select_fold(cfg)
        for note in fold.notes:
            self._log(note)
        cache = AudioCache(cfg.model.frontend_config().sample_rate)
        self._log(f"loading clips {fold.summary()} from {cfg.manifest_path}")
        fold.train_real = load_clips(
            fold.train_real, cache, "training real speech", lambda c: c.source, self._log
        )
        fold.train_spoof = load_clips(
            fold.train_spoof, cache, "training synthetic speech", lambda c: c.system, self._log
        )
        fold.dev_real = load_clips(fold.dev_real, cache, "dev real speech", lambda c: c.source, self._log)
        fold.dev_spoof = load_clips(
            fold.dev_spoof, cache, "dev synthetic speech", lambda c: c.system, self._log
        )
        return fold, cache

    def run(self, max_steps: int | None = None, on_step: Callable[[int], None] | None = None) -> Path:
        """Train to ``train.steps`` (or ``max_steps`` more steps, to test resumption); returns ``best.pt``."""
        cfg, tc = self.cfg, self.cfg.train
        torch.set_num_threads(tc.threads)
        save_config(cfg, self.run_dir / "config.yaml")
        fold, cache = self._load_data()
        self.data_summary = data_summary(cfg, fold)
        torch.manual_seed(tc.seed)
        model = SupervisedDetector(cfg.model)
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=tc.lr, weight_decay=tc.weight_decay)
        step, history, best_key = 0, [], [math.inf, math.inf]
        if self.last_path.exists():
            try:
                state = load_checkpoint(self.last_path)
            except CheckpointError as exc:
                self._log(f"ignoring unusable {self.last_path.name} and starting over: {exc}")
            else:
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                step, history = int(state["step"]), json.loads(state["history"])
                best_key = list(json.loads(state["best_key"]))
                self._log(f"resuming at step {step}")
        if step >= tc.steps and self.best_path.exists():
            self._log("run already complete")
            return self.best_path
        sr = model.frontend.cfg.sample_rate
        crop = int(cfg.data.crop_s * sr)
        real = BalancedSampler(fold.train_real, cache, crop, tc.seed, lambda c: c.source, stream=0)
        spoof = BalancedSampler(fold.train_spoof, cache, crop, tc.seed, lambda c: c.system, stream=1)
        augmenter = build_augmenter(cfg.augment, sr, tc.seed)
        self._log(augmenter.summary() if augmenter is not None else "augmentation: off")
        half = tc.batch_size // 2
        target = torch.tensor([0.0] * half + [1.0] * half)
        target = target * (1 - tc.label_smoothing) + 0.5 * tc.label_smoothing
        done = 0
        losses: list[float] = []
        t0 = time.time()
        bar = _Bar(tc.steps, step, self.progress)
        try:
            while step < tc.steps:
                model.train()
                torch.manual_seed(tc.seed * 1_000_003 + step)  # dropout replays after a resume
                batch = []
                for sampler in (real, spoof):
                    for j in range(half):
                        audio, rng = sampler.crop_at(step * half + j)
                        if augmenter is not None:
                            audio = augmenter(audio, rng)
                        batch.append(audio)
                x = torch.from_numpy(np.stack(batch).astype(np.float32))
                score, _ = model(x)
                loss = F.binary_cross_entropy_with_logits(score, target)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss at step {step}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
                step += 1
                done += 1
                bar.update(step, float(np.mean(losses[-10:])))
                if on_step is not None:
                    on_step(done)
                if step % 10 == 0:
                    rate = done * tc.batch_size / max(time.time() - t0, 1e-9)
                    msg = f"step {step}/{tc.steps} loss {np.mean(losses[-10:]):.4f} ({rate:.1f} crops/s)"
                    log(self.run_dir, msg, echo=not self.progress)
                if step % tc.eval_every == 0 or step == tc.steps:
                    dev = evaluate_dev(model, fold, cache, cfg)
                    entry = {
                        "step": step, "loss": float(np.mean(losses[-tc.eval_every :])), "dev_eer": dev["eer"],
                        "dev_bce": dev["bce"], "seconds": round(time.time() - t0, 1),
                    }  # fmt: skip
                    history.append(entry)
                    key = [dev["eer"], dev["bce"]]
                    msg = f"step {step}: dev EER {100 * dev['eer']:.2f} %, dev cross-entropy {dev['bce']:.4f}"
                    if key < best_key:
                        best_key = key
                        self._save_best(model, step, dev, history)
                        msg += " (new best)"
                    self._log(msg)
                    self._save_last(model, opt, step, history, best_key)
                elif step % tc.checkpoint_every == 0:
                    self._save_last(model, opt, step, history, best_key)
                if max_steps is not None and done >= max_steps and step < tc.steps:
                    self._save_last(model, opt, step, history, best_key)
                    self._log(f"stopping after {done} steps as asked")
                    return self.best_path
        finally:
            bar.close()
        (self.run_dir / "history.json").write_text(json.dumps(history, indent=2))
        return self.best_path

    def _save_last(self, model: SupervisedDetector, opt: torch.optim.Optimizer, step: int, history: list,
                   best_key: list[float]) -> None:  # fmt: skip
        save_checkpoint(
            {
                "kind": KIND_LAST, "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                "history": json.dumps(history), "best_key": json.dumps(best_key),
            },
            self.last_path,
        )  # fmt: skip

    def _save_best(self, model: SupervisedDetector, step: int, dev: dict[str, Any], history: list) -> None:
        save_checkpoint(
            {
                "kind": KIND_BEST, "config": json.dumps(self.cfg.to_dict()), "model": model.state_dict(),
                "step": step, "dev": json.dumps(dev), "history": json.dumps(history), "commit": git_commit(),
                "data": self.data_summary["data"], "licence": self.data_summary["licence"],
            },
            self.best_path,
        )  # fmt: skip


class _Bar:
    """A rich progress bar on a terminal; nothing when ``enabled`` is False or stderr is not a terminal."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.progress = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(), transient=False,
            )  # fmt: skip
            self.progress.start()
            self.task = self.progress.add_task("train", total=total, completed=start, loss="-")

    def update(self, step: int, loss: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, loss=f"{loss:.4f}")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def load_model(checkpoint: str | Path) -> tuple[SupervisedDetector, SupRunConfig, dict[str, Any]]:
    """Rebuild a selected supervised model from ``best.pt`` (every weight comes from the checkpoint)."""
    state = load_checkpoint(checkpoint)
    if state.get("kind") != KIND_BEST:
        raise CheckpointError(f"{checkpoint}: not a selected supervised checkpoint (use best.pt of a run)")
    cfg = config_from_dict(json.loads(state["config"]), str(checkpoint))
    cfg.model.pretrained = False  # every weight is in the checkpoint
    model = SupervisedDetector(cfg.model)
    model.load_state_dict(state["model"])
    model.eval()
    meta = {
        "step": int(state["step"]), "dev": json.loads(state["dev"]), "history": json.loads(state["history"]),
        "commit": state.get("commit", "unknown"), "data": state.get("data", ""),
        "licence": state.get("licence", ""),
    }  # fmt: skip
    return model, cfg, meta
