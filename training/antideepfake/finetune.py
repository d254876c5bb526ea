"""Fine-tune an AntiDeepfake detector on a manifest: duration batching, RawBoost, channels, resumable.

The recipe mirrors AntiDeepfake's fine-tuning (AdamW, eps 1e-6, weight decay 0.01, small learning rate,
warm-up then exponential decay, gradient-norm clip 100, cross-entropy on [fake, real] logits, random 10-13 s
crops of long utterances) and adds what a user fine-tuning on their own calls needs:

* duration-bucketed batches (``max_batch_seconds`` of audio per batch); each batch is cropped to its shortest
  item at a random offset, so no padding enters the per-utterance normalisation or the mean pooling;
* RawBoost (``--rawboost-algo``, 0 = off) and telephone / G.722 channel round trips;
* mixed precision (fp16 with loss scaling on CUDA, bf16 on request on CPU);
* an atomic ``last.ckpt`` with optimiser, scheduler, position in the epoch and RNG states, so ``--resume``
  continues the same run exactly where it stopped; ``best.ckpt`` keeps the lowest validation EER.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.antideepfake.architectures import SAMPLE_RATE, ArchSpec, get_arch
from training.antideepfake.audio import load_audio
from training.antideepfake.augment import ChannelConfig, RawBoostConfig, channel, rawboost
from training.antideepfake.checkpoint import (
    load_detector,
    read_training_state,
    save_training_checkpoint,
)
from training.antideepfake.data import (
    BatchPlan,
    Utterance,
    duration_batches,
    fill_durations,
    random_crop,
    read_manifest,
)
from training.antideepfake.evaluate import build_report, score_items, torch_scorer
from training.antideepfake.model import AntiDeepfakeDetector


@dataclass
class FinetuneConfig:
    """Everything that defines a run; stored as ``config.json`` in the run folder."""

    train_manifest: str
    out_dir: str
    arch: str = "w2v_small"
    init: str | None = None  # checkpoint to start from (released or training format); None = random init
    valid_manifest: str | None = None
    data_root: str | None = None
    train_split: str | None = "train"
    valid_split: str | None = "dev"
    validate: bool = True
    steps: int = 1000
    lr: float = 1e-6
    weight_decay: float = 0.01
    warmup_steps: int = 100
    decay_final: float = 0.01  # lr multiplier reached at the last step (exponential decay after warm-up)
    grad_clip: float = 100.0
    plan: BatchPlan = field(default_factory=BatchPlan)
    rawboost: RawBoostConfig = field(default_factory=RawBoostConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    freeze_feature_encoder: bool = False
    valid_every: int = 200
    save_every: int = 100
    valid_max_seconds: float = 13.0
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FinetuneConfig:
        raw = dict(raw)
        raw["plan"] = BatchPlan(**raw.get("plan", {}))
        raw["rawboost"] = RawBoostConfig(**raw.get("rawboost", {}))
        raw["channel"] = ChannelConfig(**raw.get("channel", {}))
        return cls(**raw)


def _lr_lambda(cfg: FinetuneConfig) -> Any:
    warm = max(cfg.warmup_steps, 0)
    span = max(cfg.steps - warm, 1)
    rate = math.log(max(cfg.decay_final, 1e-12)) / span

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return math.exp(rate * min(step - warm, span))

    return f


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32" or (precision == "auto" and device.type == "cpu"):
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision in ("fp16", "auto"):
        return torch.float16 if device.type == "cuda" else None
    raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")


def build_model(cfg: FinetuneConfig) -> tuple[AntiDeepfakeDetector, str]:
    """The starting model and a one-line description of where its weights came from."""
    if cfg.init:
        model, report = load_detector(cfg.init, cfg.arch or None)
        return model, report.summary()
    spec: ArchSpec = get_arch(cfg.arch)
    return AntiDeepfakeDetector(spec), f"random initialisation of {spec.name} (not a pretrained model)"


def make_batch(
    items: list[Utterance], cfg: FinetuneConfig, rng: np.random.Generator, train: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load, crop, augment and stack one batch: ([B, L] float32 waveforms, [B] labels)."""
    waves = []
    for utt in items:
        x = load_audio(utt.path)
        if len(x) > cfg.plan.crop_max_s * SAMPLE_RATE:
            crop = rng.uniform(cfg.plan.crop_min_s, cfg.plan.crop_max_s)
            x = random_crop(x, int(crop * SAMPLE_RATE), rng)
        if train:
            x = channel(x, cfg.channel, rng)
            x = rawboost(x, cfg.rawboost, rng)
        waves.append(x)
    length = min(len(w) for w in waves)
    stacked = np.stack([random_crop(w, length, rng) for w in waves]).astype(np.float32)
    labels = torch.tensor([u.label for u in items], dtype=torch.long)
    return torch.from_numpy(stacked), labels


class Finetuner:
    """Runs one fine-tuning job; :meth:`run` is resumable from ``out_dir/last.ckpt``."""

    def __init__(self, cfg: FinetuneConfig, *, resume: bool = False) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = _device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.train_items = fill_durations(
            read_manifest(cfg.train_manifest, data_root=cfg.data_root, split=cfg.train_split)
        )
        labels = {u.label for u in self.train_items}
        if labels != {0, 1}:
            raise ValueError(f"{cfg.train_manifest}: training needs both real and fake clips, found {labels}")
        valid_source = cfg.valid_manifest or cfg.train_manifest
        self.valid_items: list[Utterance] = []
        if cfg.validate:
            self.valid_items = read_manifest(valid_source, data_root=cfg.data_root, split=cfg.valid_split)
        self.model, self.origin = build_model(cfg)
        self.model.to(self.device)
        if cfg.freeze_feature_encoder:
            for p in self.model.backbone.feature_extractor.parameters():
                p.requires_grad_(False)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, eps=1e-6)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg))
        self.amp_dtype = _autocast_dtype(cfg.precision, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_eer = float("inf")
        self.rng = np.random.default_rng(cfg.seed)
        if resume and (self.out / "last.ckpt").exists():
            self._restore(self.out / "last.ckpt")
        (self.out / "config.json").write_text(cfg.to_json())

    # ---------------------------------------------------------------------------------------------- state

    def _save(self, name: str) -> Path:
        return save_training_checkpoint(
            self.out / name,
            self.model,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            step=self.step,
            epoch=self.epoch,
            batch_in_epoch=self.batch_in_epoch,
            best_eer=self.best_eer,
            rng=self.rng.bit_generator.state,
            torch_rng=torch.get_rng_state(),
            data=str(self.cfg.train_manifest),
            origin=self.origin,
        )

    def _restore(self, path: Path) -> None:
        state = read_training_state(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.best_eer = float(state["best_eer"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        self._log({"event": "resumed", "from": str(path), "step": self.step})

    def _log(self, record: dict[str, Any]) -> None:
        record = {"time": round(time.time(), 3), **record}
        with (self.out / "log.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------------------------------ training

    def _epoch_batches(self) -> list[list[int]]:
        durations = [float(u.duration or 0.0) for u in self.train_items]
        return duration_batches(
            durations, self.cfg.plan, rng=np.random.default_rng(self.cfg.seed + self.epoch)
        )

    def train_step(self, wav: torch.Tensor, labels: torch.Tensor) -> float:
        self.model.train()
        wav, labels = wav.to(self.device), labels.to(self.device)
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            logits = self.model(wav).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.step}; lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach())

    def validate(self) -> float:
        if not self.valid_items:
            return float("nan")
        scorer = torch_scorer(self.model)
        scored, _ = score_items(
            self.valid_items, scorer, max_seconds=self.cfg.valid_max_seconds, progress=False
        )
        report = build_report(scored, model=self.cfg.arch, manifest=str(self.cfg.valid_manifest))
        self._log({"event": "valid", "step": self.step, "eer": report.pooled.eer, "auc": report.pooled.auc})
        return report.pooled.eer

    def run(self) -> dict[str, Any]:
        """Train until ``cfg.steps``; returns a summary (also logged)."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        cfg = self.cfg
        self._log(
            {"event": "start", "step": self.step, "origin": self.origin, "train": len(self.train_items)}
        )
        losses: list[float] = []
        t0 = time.perf_counter()
        with Progress(
            TextColumn("[bold]fine-tune"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps {task.fields[info]}"),
            TimeRemainingColumn(),
            disable=not cfg.progress,
        ) as bar:
            task = bar.add_task("train", total=cfg.steps, completed=self.step, info="")
            while self.step < cfg.steps:
                batches = self._epoch_batches()
                while self.batch_in_epoch < len(batches) and self.step < cfg.steps:
                    idx = batches[self.batch_in_epoch]
                    wav, labels = make_batch([self.train_items[i] for i in idx], cfg, self.rng)
                    loss = self.train_step(wav, labels)
                    losses.append(loss)
                    self.step += 1
                    self.batch_in_epoch += 1
                    lr = self.scheduler.get_last_lr()[0]
                    bar.update(task, completed=self.step, info=f"loss {loss:.4f} lr {lr:.2e}")
                    self._log({"event": "step", "step": self.step, "loss": loss, "lr": lr, "batch": len(idx)})
                    if self.step % cfg.valid_every == 0 or self.step == cfg.steps:
                        eer = self.validate()
                        if not math.isnan(eer) and eer < self.best_eer:
                            self.best_eer = eer
                            self._save("best.ckpt")
                    if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                        self._save("last.ckpt")
                if self.batch_in_epoch >= len(batches):
                    self.epoch += 1
                    self.batch_in_epoch = 0
        summary = {
            "event": "done",
            "step": self.step,
            "epoch": self.epoch,
            "mean_loss_last_50": float(np.mean(losses[-50:])) if losses else float("nan"),
            "best_valid_eer": self.best_eer if math.isfinite(self.best_eer) else None,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        self._log(summary)
        return summary
