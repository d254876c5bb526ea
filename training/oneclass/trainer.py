"""Training loop of the one-class detector: bona fide crops only, checkpoint selection on a labelled dev set.

Why the selection is done this way: a lower STFPM loss was measured to be a *worse* detector
(reference/detection-baseline.md), so the loss only drives the optimiser. After every epoch the model is
scored on the dev split (dev real vs dev spoof systems; never the eval split that the report quotes) and the
checkpoint with the lowest dev EER of the configured scorer is kept as ``best.pt``. DS statistics are fitted
on one half of the dev real clips and the EER and threshold are measured on the other half, so the DS-on
scores are not judged in-sample.

Resumability: every ``checkpoint_every`` steps ``last.pt`` holds the student, the optimiser, the position
``(epoch, step)`` and the history. Crops and augmentation draw from RNGs seeded by ``(seed, epoch, index)``,
so a run resumed after a kill replays exactly the batches it would have seen.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.augment import build_augmenter, preset_name
from training.evaluation.metrics import eer

from .checkpoint import load_checkpoint, save_checkpoint
from .config import RunConfig, save_config
from .data import (
    AudioCache,
    Clip,
    CropSampler,
    DataError,
    read_manifest,
    require,
    select,
    stable_fraction,
    subsample,
)
from .model import STFPM, ModelConfig
from .scoring import SCORERS, calibration_from_windows, fit_ds, score_clips


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def log(run_dir: Path, message: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {message}"
    print(line, flush=True)
    with open(run_dir / "train.log", "a") as fh:
        fh.write(line + "\n")


def data_summary(cfg: RunConfig, train: list[Clip]) -> dict[str, str]:
    """What the model was trained on, for the bundle's provenance and licence fields."""
    from collections import Counter

    hours = Counter()
    licences = Counter()
    for c in train:
        hours[c.source or "unknown"] += c.duration / 3600
        licences[c.licence or "unknown"] += 1
    sources = ", ".join(f"{k} {v:.2f} h" for k, v in sorted(hours.items()))
    preset = preset_name(cfg.augment)
    aug = f"on-the-fly augmentation (preset {preset})" if preset != "off" else "no augmentation"
    return {
        "data": (
            f"{len(train)} real clips of split {cfg.data.train_split!r} from {cfg.data.manifest} "
            f"({sources}); {aug}"
        ),
        "licence": "weights derived from training audio under: " + "; ".join(sorted(licences)),
    }


class DevSet:
    """The labelled dev data used for checkpoint selection, DS fitting and calibration."""

    def __init__(self, cfg: RunConfig, clips: list[Clip]) -> None:
        d = cfg.data
        manifest = cfg.manifest_path
        real = require(
            select(clips, d.dev_split, "real", d.channels, exclude_sources=d.exclude_sources),
            f"split {d.dev_split!r}, label real",
            manifest,
        )
        spoof = require(
            select(clips, d.dev_split, "spoof", d.channels), f"split {d.dev_split!r}, label spoof", manifest
        )
        real = subsample(real, 2 * d.max_dev_clips, key="dev-real")
        self.ds_fit = [c for c in real if stable_fraction("ds|" + str(c.path)) < 0.5]
        self.real = [c for c in real if stable_fraction("ds|" + str(c.path)) >= 0.5]
        if not self.ds_fit or not self.real:
            raise DataError(f"{manifest}: too few dev real clips to split into DS-fit and scoring halves")
        self.spoof = subsample(spoof, d.max_dev_clips, key="dev-spoof")


def evaluate_dev(model: STFPM, dev: DevSet, cache: AudioCache, cfg: RunConfig) -> dict[str, Any]:
    """Fit DS on the dev DS half, score dev real (other half) and dev spoof, return EERs and calibrations."""
    sc = cfg.scoring
    n_ds = fit_ds(model, dev.ds_fit, cache, sc.window_s, sc.hop_s, sc.min_audio_s, sc.batch_size)
    real = score_clips(model, dev.real, cache, sc.window_s, sc.hop_s, sc.min_audio_s, sc.batch_size)
    spoof = score_clips(model, dev.spoof, cache, sc.window_s, sc.hop_s, sc.min_audio_s, sc.batch_size)
    if not real or not spoof:
        raise DataError("dev split: no clip long enough to score in one of the classes")
    out: dict[str, Any] = {"ds_windows": n_ds, "eer": {}, "calibration": {}}
    for scorer in SCORERS:
        r = np.array([c.clip_score(scorer) for c in real])
        s = np.array([c.clip_score(scorer) for c in spoof])
        out["eer"][scorer] = eer(np.r_[r, s], np.r_[np.zeros(len(r)), np.ones(len(s))])
        rw = np.concatenate([c.windows[scorer] for c in real])
        sw = np.concatenate([c.windows[scorer] for c in spoof])
        cal = calibration_from_windows(rw, sw, sc.threshold_quantile)
        cal["fitted_on"] = (
            f"threshold: {100 * sc.threshold_quantile:g}th percentile of {len(rw)} held-out real dev windows "
            f"({len(real)} clips); probability: logistic fit of those vs {len(sw)} dev spoof windows"
        )
        out["calibration"][scorer] = cal
    return out


class Trainer:
    """Runs (or resumes) one training run in ``run_dir``."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path, progress: bool = True) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.last_path = self.run_dir / "last.pt"
        self.best_path = self.run_dir / "best.pt"

    def _load_data(self) -> tuple[list[Clip], DevSet | None, AudioCache]:
        cfg = self.cfg
        d = cfg.data
        clips = read_manifest(cfg.manifest_path)
        train = require(
            select(clips, d.train_split, "real", d.channels, d.sources, d.exclude_sources, d.bands),
            f"split {d.train_split!r}, label real" + (f", sources {d.sources}" if d.sources else ""),
            cfg.manifest_path,
        )
        try:
            dev: DevSet | None = DevSet(cfg, clips)
        except DataError as exc:
            # Training needs only real speech; selection can run later (``select``) once the dev split exists.
            log(self.run_dir, f"no dev selection during training ({exc}); run `select` afterwards")
            dev = None
        cache = AudioCache(cfg.model.frontend_config().sample_rate)
        todo = train + ((dev.ds_fit + dev.real + dev.spoof) if dev else [])
        log(self.run_dir, f"loading {len(todo)} clips ({len(train)} train real) from {cfg.manifest_path}")
        for c in todo:
            cache.get(c)  # decode everything now: a bad file fails here, named, not an hour into the run
        return train, dev, cache

    def run(self, max_steps: int | None = None, on_step: Callable[[int], None] | None = None) -> Path:
        """Train until the configured epochs are done (or ``max_steps`` more steps); returns ``best.pt``."""
        cfg, tc = self.cfg, self.cfg.train
        torch.set_num_threads(tc.threads)
        save_config(cfg, self.run_dir / "config.yaml")
        train, dev, cache = self._load_data()
        self.data_summary = data_summary(cfg, train)
        torch.manual_seed(tc.seed)
        model = STFPM(cfg.model)
        opt = torch.optim.Adam(model.student.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        epoch, step, history, best = 0, 0, [], math.inf
        if self.last_path.exists():
            state = load_checkpoint(self.last_path)
            model.student.load_state_dict(state["student"])
            opt.load_state_dict(state["optimizer"])
            epoch, step = int(state["epoch"]), int(state["step"])
            history = json.loads(state["history"])
            best = float(state["best"])
            log(self.run_dir, f"resuming at epoch {epoch} step {step}")
        crop = int(cfg.data.crop_s * model.frontend.cfg.sample_rate)
        sampler = CropSampler(train, cache, crop, tc.seed, cfg.data.source_balance)
        augmenter = build_augmenter(cfg.augment, model.frontend.cfg.sample_rate, tc.seed)
        log(self.run_dir, augmenter.summary() if augmenter is not None else "augmentation: off")
        steps_per_epoch = max(1, tc.crops_per_epoch // tc.batch_size)
        done_steps = 0
        started = time.time()
        epoch_seconds: list[float] = []
        while epoch < tc.epochs:
            if tc.max_minutes is not None and epoch_seconds and step == 0:
                elapsed = time.time() - started
                if elapsed + float(np.mean(epoch_seconds)) > 60 * tc.max_minutes:
                    log(self.run_dir, f"time budget of {tc.max_minutes:g} min: stopping after epoch {epoch}")
                    break
            model.train()
            t0 = time.time()
            losses: list[float] = []
            while step < steps_per_epoch:
                batch = []
                for j in range(tc.batch_size):
                    audio, rng = sampler.crop_at(epoch, step * tc.batch_size + j)
                    if augmenter is not None:
                        audio = augmenter(audio, rng)
                    batch.append(audio)
                x = torch.from_numpy(np.stack(batch).astype(np.float32))
                loss = model.loss(x)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss at epoch {epoch} step {step}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                step += 1
                done_steps += 1
                if on_step is not None:
                    on_step(done_steps)
                if step % 10 == 0 or step == steps_per_epoch:
                    rate = step * tc.batch_size / max(time.time() - t0, 1e-9)
                    log(
                        self.run_dir,
                        f"epoch {epoch + 1}/{tc.epochs} step {step}/{steps_per_epoch} "
                        f"loss {np.mean(losses[-10:]):.4f} ({rate:.1f} crops/s)",
                    )
                if step % tc.checkpoint_every == 0 and step < steps_per_epoch:
                    self._save_last(model, opt, epoch, step, history, best)
                if max_steps is not None and done_steps >= max_steps:
                    self._save_last(model, opt, epoch, step, history, best)
                    log(self.run_dir, f"stopping after {done_steps} steps as asked")
                    return self.best_path
            # end of epoch: keep the epoch's student, then select on dev
            self._save_epoch(model, epoch + 1)
            entry: dict[str, Any] = {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)) if losses else None,
                "seconds": round(time.time() - t0, 1),
            }
            history.append(entry)
            best = self._select(model, epoch + 1, dev, cache, history, best)
            epoch_seconds.append(time.time() - t0)
            epoch, step = epoch + 1, 0
            self._save_last(model, opt, epoch, step, history, best)
        (self.run_dir / "history.json").write_text(json.dumps(history, indent=2))
        if dev is None:
            log(self.run_dir, "training done; no dev split was available: run `select` to choose best.pt")
        return self.best_path

    def _select(
        self, model: STFPM, epoch: int, dev: DevSet | None, cache: AudioCache, history: list, best: float
    ) -> float:
        """Score the epoch on dev; keep it as ``best.pt`` if its dev EER is the lowest so far."""
        if dev is None:
            return best
        tc = self.cfg.train
        dev_res = evaluate_dev(model, dev, cache, self.cfg)
        score = dev_res["eer"][tc.select_scorer]
        for entry in history:
            if entry["epoch"] == epoch:
                entry["dev_eer"] = dev_res["eer"]
        eers = ", ".join(f"{k} {100 * v:.1f} %" for k, v in dev_res["eer"].items())
        log(self.run_dir, f"epoch {epoch} dev EER {eers}")
        if score < best:
            best = score
            self._save_best(model, epoch, dev_res, history)
            log(
                self.run_dir, f"new best ({tc.select_scorer} dev EER {100 * score:.1f} %) -> {self.best_path}"
            )
        return best

    def select(self, only: list[int] | None = None) -> Path:
        """Checkpoint selection after training: score every ``epoch_N.pt`` on dev and write ``best.pt``."""
        cfg, d = self.cfg, self.cfg.data
        torch.set_num_threads(cfg.train.threads)
        clips = read_manifest(cfg.manifest_path)
        train = select(clips, d.train_split, "real", d.channels, d.sources, d.exclude_sources, d.bands)
        self.data_summary = data_summary(cfg, train)
        dev = DevSet(cfg, clips)
        cache = AudioCache(cfg.model.frontend_config().sample_rate)
        history_path = self.run_dir / "history.json"
        history = json.loads(history_path.read_text()) if history_path.exists() else []
        model = STFPM(cfg.model)
        best = math.inf
        epochs = sorted(self.run_dir.glob("epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
        if only:
            epochs = [p for p in epochs if int(p.stem.split("_")[1]) in only]
        if not epochs:
            raise DataError(f"{self.run_dir}: no epoch_N.pt checkpoints to select from")
        for path in epochs:
            state = load_checkpoint(path)
            model.student.load_state_dict(state["student"])
            epoch = int(state["epoch"])
            if not any(e.get("epoch") == epoch for e in history):
                history.append({"epoch": epoch})
            best = self._select(model, epoch, dev, cache, history, best)
        history_path.write_text(json.dumps(history, indent=2))
        return self.best_path

    def _save_epoch(self, model: STFPM, epoch: int) -> None:
        save_checkpoint(
            {"kind": "stream-guard/oneclass-epoch", "student": model.student.state_dict(), "epoch": epoch},
            self.run_dir / f"epoch_{epoch}.pt",
        )

    def _save_last(
        self, model: STFPM, opt: torch.optim.Optimizer, epoch: int, step: int, history: list, best: float
    ) -> None:
        save_checkpoint(
            {
                "kind": "stream-guard/oneclass-last",
                "student": model.student.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch,
                "step": step,
                "history": json.dumps(history),
                "best": best,
            },
            self.last_path,
        )

    def _save_best(self, model: STFPM, epoch: int, dev_res: dict[str, Any], history: list) -> None:
        cfg = self.cfg
        save_checkpoint(
            {
                "kind": "stream-guard/oneclass",
                "config": json.dumps(cfg.to_dict()),
                "student": model.student.state_dict(),
                "ds": {k: v.clone() for k, v in model.state_dict().items() if k.startswith("ds_")},
                "epoch": epoch,
                "steps": epoch * max(1, cfg.train.crops_per_epoch // cfg.train.batch_size),
                "dev": json.dumps(dev_res),
                "history": json.dumps(history),
                "commit": git_commit(),
                "data": self.data_summary["data"],
                "licence": self.data_summary["licence"],
            },
            self.best_path,
        )


def load_model(checkpoint: str | Path) -> tuple[STFPM, RunConfig, dict[str, Any]]:
    """Rebuild an STFPM (teacher from its pretrained file, student and DS from the checkpoint)."""
    from .config import config_from_dict

    state = load_checkpoint(checkpoint)
    if state.get("kind") != "stream-guard/oneclass":
        raise DataError(f"{checkpoint}: not a selected one-class checkpoint (use best.pt of a run)")
    cfg = config_from_dict(json.loads(state["config"]), str(checkpoint))
    if isinstance(cfg.model, dict):  # pragma: no cover - config_from_dict builds the dataclass
        cfg.model = ModelConfig(**cfg.model)
    model = STFPM(cfg.model)
    model.student.load_state_dict(state["student"])
    current = model.state_dict()
    for k, v in state["ds"].items():
        current[k].copy_(v)
    model.eval()
    meta = {
        "epoch": state["epoch"],
        "steps": state["steps"],
        "dev": json.loads(state["dev"]),
        "history": json.loads(state["history"]),
        "commit": state.get("commit", "unknown"),
        "data": state.get("data", str(cfg.data.manifest)),
        "licence": state.get("licence", ""),
    }
    return model, cfg, meta
