"""``python -m training.supervised {train,export}``: the supervised companion's command line.

- ``train --config CFG --run-dir runs/NAME``: train (or resume) a run; the config is copied into the run
folder.
- ``export --checkpoint runs/NAME/best.pt --out supervised.onnx``: a parity-checked bundle.

Reports on held-out data come from ``python -m training.protocol run`` (leave-one-out folds).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.supervised", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train or resume a run")
    t.add_argument(
        "--config", type=Path, default=None, help="YAML config (default: the run dir's config.yaml)"
    )
    t.add_argument("--run-dir", type=Path, required=True)
    t.add_argument("--manifest", default=None, help="override data.manifest")
    t.add_argument("--max-steps", type=int, default=None, help="stop after this many more steps")
    t.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    e = sub.add_parser("export", help="export a run's best checkpoint as a bundle")
    e.add_argument("--checkpoint", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--name", default=None)
    e.add_argument(
        "--parity-audio", nargs="*", type=Path, default=None, help="real audio for the parity check"
    )
    args = p.parse_args(argv)

    from training.oneclass.backbones import BackboneError
    from training.oneclass.checkpoint import CheckpointError
    from training.oneclass.data import DataError

    from .config import ConfigError, load_config

    try:
        if args.cmd == "train":
            from .trainer import SupervisedTrainer

            cfg = load_config(args.config or args.run_dir / "config.yaml")
            if args.manifest:
                cfg.data.manifest = args.manifest
            trainer = SupervisedTrainer(cfg, args.run_dir, progress=not args.no_progress)
            print(trainer.run(max_steps=args.max_steps))
            return 0
        from export.onnx_utils import ExportError

        from .export import export_supervised

        try:
            res = export_supervised(args.checkpoint, args.out, args.parity_audio, args.name)
        except ExportError as exc:
            print(f"training.supervised: export error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(res, indent=2))
        return 0
    except (ConfigError, DataError, CheckpointError, BackboneError) as exc:
        print(f"training.supervised: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
