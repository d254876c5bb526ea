"""``python -m training.oneclass {train,select,evaluate,card,tiny-corpus}``: the one-class detector's CLI.

- ``train --config CFG --run-dir runs/NAME``: train (or resume) a run; the config is copied into the run
  folder.
- ``select --run-dir runs/NAME``: choose ``best.pt`` among the epoch checkpoints on dev (if training ran
  before the dev split existed).
- ``evaluate --run-dir runs/NAME``: the report (report.md, metrics.json, DET curves, example maps) of its
  best.pt.
- ``card --run-dir runs/NAME --bundle B.onnx --out B.md``: the model card, from the run's evaluation.
- ``tiny-corpus --out DIR``: a small generated corpus for smoke tests and CI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.oneclass", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train or resume a run")
    t.add_argument(
        "--config", type=Path, default=None, help="YAML config (default: the run dir's config.yaml)"
    )
    t.add_argument("--run-dir", type=Path, required=True)
    t.add_argument("--manifest", default=None, help="override data.manifest")
    t.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke tests)")
    s = sub.add_parser("select", help="choose best.pt among a run's epoch checkpoints on the dev split")
    s.add_argument("--run-dir", type=Path, required=True)
    s.add_argument("--manifest", default=None, help="override data.manifest")
    s.add_argument("--epochs", type=int, nargs="*", default=None, help="only these epoch checkpoints")
    s.add_argument("--max-dev-clips", type=int, default=None, help="override data.max_dev_clips")
    e = sub.add_parser("evaluate", help="evaluate a run's best checkpoint")
    e.add_argument("--run-dir", type=Path, required=True)
    e.add_argument("--checkpoint", type=Path, default=None, help="default: RUN_DIR/best.pt")
    e.add_argument("--manifest", default=None, help="override data.manifest")
    e.add_argument("--split", default=None, help="split to report (default: the config's eval_split)")
    e.add_argument("--max-clips", type=int, default=None, help="per class and channel (default: all)")
    e.add_argument("--boot", type=int, default=200, help="bootstrap resamples for the CIs")
    c = sub.add_parser("card", help="write the model card of an exported bundle from its run's evaluation")
    c.add_argument("--run-dir", type=Path, required=True)
    c.add_argument("--bundle", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--baseline-run", type=Path, default=None)
    c.add_argument("--manifest", type=Path, default=None, help="corpus manifest for the shortcut checks")
    g = sub.add_parser("tiny-corpus", help="write a small generated corpus and manifest")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--clips", type=int, default=6)
    args = p.parse_args(argv)

    from .checkpoint import CheckpointError
    from .config import ConfigError, load_config
    from .data import DataError

    try:
        if args.cmd == "tiny-corpus":
            from .tiny import build_tiny_corpus

            print(build_tiny_corpus(args.out, args.clips))
            return 0
        if args.cmd == "train":
            from .trainer import Trainer

            cfg_path = args.config or args.run_dir / "config.yaml"
            cfg = load_config(cfg_path)
            if args.manifest:
                cfg.data.manifest = args.manifest
            best = Trainer(cfg, args.run_dir).run(max_steps=args.max_steps)
            print(best)
            return 0
        if args.cmd == "card":
            from .card import write_card

            print(write_card(args.run_dir, args.bundle, args.out, args.baseline_run, args.manifest))
            return 0
        if args.cmd == "select":
            from .trainer import Trainer

            cfg = load_config(args.run_dir / "config.yaml")
            if args.manifest:
                cfg.data.manifest = args.manifest
            if args.max_dev_clips:
                cfg.data.max_dev_clips = args.max_dev_clips
            print(Trainer(cfg, args.run_dir).select(args.epochs))
            return 0
        from .evaluate import evaluate_run

        report = evaluate_run(
            args.run_dir,
            args.checkpoint,
            manifest=args.manifest,
            split=args.split,
            max_clips=args.max_clips,
            n_boot=args.boot,
        )
        print(report)
        return 0
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"training.oneclass: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
