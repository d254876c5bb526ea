"""``python -m training.protocol {run,tiny-corpus}``: the leave-one-out evaluation.

- ``run --config CFG [--run-dir DIR] [--manifest M] [--fold NAME ...]``: run or resume every fold, then write
  ``report.md``, ``metrics.json`` and DET plots in the run folder (default ``runs/<name>``). Interrupt at any
  time; a rerun skips complete folds and resumes the training of the interrupted one.
- ``report --run-dir DIR``: rewrite the report from the folds complete so far.
- ``summary --run-dir DIR [--detectors NAME ...]``: compact markdown tables (pooled and per-family EER,
  per-source false alarms), every row or the named ones in that order.
- ``oneclass-folds --out DIR [--sources S ...]``: the one-class bundles retrained per left-out source
  (``DIR/<S>.onnx``, for a row ``{source}`` path; see :mod:`training.protocol.oneclass_folds`); resumable.
- ``tiny-corpus --out DIR``: the generated two-source corpus of the smoke test.
- ``snapshot --corpus DIR --out M.csv``: a manifest of the clips a corpus build has finished so far (its
  per-clip sidecars), to start evaluating while a long build is still running.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.protocol", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run or resume the protocol")
    r.add_argument("--config", type=Path, required=True)
    r.add_argument("--run-dir", type=Path, default=None)
    r.add_argument("--manifest", default=None, help="override the config's manifest")
    r.add_argument(
        "--oneclass-bundle",
        default=None,
        help="override the bundle of the one-class row the fusion uses (or the single bundle of a config "
        "with oneclass_bundle)",
    )
    r.add_argument("--fold", action="append", default=None, help="run only this fold (repeatable)")
    r.add_argument("--no-progress", action="store_true")
    w = sub.add_parser("report", help="rewrite the report of a run from its complete folds")
    w.add_argument("--run-dir", type=Path, required=True)
    m = sub.add_parser("summary", help="compact markdown tables of a run's metrics.json")
    m.add_argument("--run-dir", type=Path, required=True)
    m.add_argument("--detectors", nargs="+", default=None, help="rows to print, in this order")
    o = sub.add_parser(
        "oneclass-folds", help="train, refit and export a one-class bundle per left-out source"
    )
    o.add_argument("--out", type=Path, default=Path("runs/loo-final/oneclass-folds"))
    o.add_argument("--sources", nargs="+", default=None, help="sources to leave out, in this order")
    o.add_argument("--base", type=Path, default=None, help="training config (default: the shipped recipe)")
    o.add_argument("--prefix", default="stfpm-lite0-v2-loso", help="bundle names: PREFIX-SOURCE")
    o.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="refit override (default: pooling=mean, the shipped scoring); --set none: no refit",
    )
    o.add_argument("--manifest", default=None, help="override the training config's manifest")
    o.add_argument("--max-steps", type=int, default=None, help="training steps per fold (smoke tests)")
    g = sub.add_parser("tiny-corpus", help="write the generated two-source corpus")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--silent-source", action="store_true", help="add a source with no usable speech")
    n = sub.add_parser("snapshot", help="manifest of the clips a running corpus build has finished")
    n.add_argument("--corpus", type=Path, required=True, help="<cache>/corpus/<profile>")
    n.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    from training.oneclass.backbones import BackboneError
    from training.oneclass.checkpoint import CheckpointError
    from training.oneclass.data import DataError

    from .config import ConfigError, load_protocol_config

    try:
        if args.cmd == "tiny-corpus":
            from .tiny import build_protocol_corpus

            print(build_protocol_corpus(args.out, silent_source=args.silent_source))
            return 0
        if args.cmd == "oneclass-folds":
            from . import oneclass_folds as of

            refit_set = of.DEFAULT_REFIT if args.set is None else [s for s in args.set if s != "none"]
            status = of.make_folds(
                args.out,
                args.sources or of.DEFAULT_SOURCES,
                args.base or of.DEFAULT_BASE,
                args.prefix,
                refit_set,
                args.manifest,
                args.max_steps,
            )
            failed = {k: v for k, v in status.items() if v not in ("done", "skipped")}
            return 1 if failed else 0
        if args.cmd == "snapshot":
            from .tiny import snapshot_manifest

            print(snapshot_manifest(args.corpus, args.out))
            return 0
        from stream_guard.bundle import BundleError

        from .runner import ProtocolRunner, plan_folds, write_report

        if args.cmd == "summary":
            from .runner import summary_markdown

            print(summary_markdown(args.run_dir, args.detectors), end="")
            return 0
        if args.cmd == "report":
            cfg, _ = load_protocol_config(args.run_dir / "protocol.yaml", need_supervised=False)
            from training.oneclass.data import read_manifest

            clips = read_manifest(Path(cfg.manifest).expanduser())
            print(write_report(args.run_dir, cfg, plan_folds(cfg, clips, Path(cfg.manifest))))
            return 0
        cfg, sup = load_protocol_config(args.config)
        if args.manifest:
            cfg.manifest = args.manifest
        if args.oneclass_bundle is not None:
            partner = cfg.fusion_partner()
            if cfg.oneclass_bundles is not None and partner is not None:
                if not args.oneclass_bundle:
                    raise ConfigError("--oneclass-bundle: a path is needed where the config has rows")
                cfg.oneclass_bundles = {**cfg.oneclass_bundles, partner: args.oneclass_bundle}
            else:
                cfg.oneclass_bundle = args.oneclass_bundle
        run_dir = args.run_dir or Path("runs") / cfg.name
        runner = ProtocolRunner(cfg, sup, run_dir, progress=not args.no_progress)
        print(runner.run(only=args.fold))
        return 0
    except (ConfigError, DataError, CheckpointError, BackboneError, BundleError) as exc:
        print(f"training.protocol: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
