"""Command line: ``python -m training.antideepfake {archs,inspect,finetune,evaluate}``.

User errors (bad checkpoint, bad manifest, unreadable audio) print one clear message and exit with status 2;
only programming errors show a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.antideepfake.architectures import ARCHITECTURES


def _cmd_archs(_: argparse.Namespace) -> int:
    print(f"{'name':10} {'family':9} {'D':>5} {'layers':>6} {'extractor':9} {'params':>8}  description")
    for spec in ARCHITECTURES.values():
        print(
            f"{spec.name:10} {spec.family:9} {spec.hidden:5d} {spec.layers:6d} {spec.extractor:9} "
            f"{spec.params_millions:7.0f}M  {spec.description}"
        )
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from training.antideepfake.checkpoint import load_detector, report_json

    model, report = load_detector(args.checkpoint, args.arch, trust_pickle=args.trust_pickle)
    print(report.summary())
    if args.json:
        print(report_json(report))
    print(f"parameters: {model.num_parameters() / 1e6:.1f} M")
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from training.antideepfake.augment import ChannelConfig, RawBoostConfig
    from training.antideepfake.data import BatchPlan
    from training.antideepfake.finetune import FinetuneConfig, Finetuner

    cfg = FinetuneConfig(
        train_manifest=args.train,
        out_dir=args.out,
        arch=args.arch or ("" if args.init else "w2v_small"),
        init=args.init,
        valid_manifest=args.valid,
        data_root=args.data_root,
        train_split=args.train_split or None,
        valid_split=args.valid_split or None,
        validate=not args.no_valid,
        steps=args.steps,
        lr=args.lr,
        warmup_steps=args.warmup,
        plan=BatchPlan(
            max_batch_seconds=args.max_batch_seconds,
            crop_min_s=args.crop_min,
            crop_max_s=args.crop_max,
            max_batch_size=args.max_batch_size,
        ),
        rawboost=RawBoostConfig(algo=args.rawboost_algo),
        channel=ChannelConfig(mulaw_prob=args.mulaw_prob, g722_prob=args.g722_prob),
        precision=args.precision,
        freeze_feature_encoder=args.freeze_feature_encoder,
        valid_every=args.valid_every,
        save_every=args.save_every,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    if args.tiny:
        if args.init:
            raise SystemExit("error: --tiny builds a random model; it cannot be combined with --init")
        cfg.arch = f"{cfg.arch}-tiny"
    summary = Finetuner(cfg, resume=args.resume).run()
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from training.antideepfake.data import read_manifest
    from training.antideepfake.evaluate import evaluate, onnx_scorer, torch_scorer

    items = read_manifest(args.manifest, data_root=args.data_root, split=args.split or None)
    if args.model.endswith(".onnx"):
        scorer = onnx_scorer(args.model, threads=args.threads)
    else:
        import torch

        from training.antideepfake.checkpoint import load_detector

        if args.threads:
            torch.set_num_threads(args.threads)
        detector, report = load_detector(args.model, args.arch, trust_pickle=args.trust_pickle)
        print(report.summary(), file=sys.stderr)
        scorer = torch_scorer(detector)
    result = evaluate(
        items,
        scorer,
        args.out,
        model=Path(args.model).name,
        manifest=args.manifest,
        threshold=args.threshold,
        max_seconds=args.max_seconds,
        progress=not args.no_progress,
    )
    print(result.to_markdown())
    print(f"written: {Path(args.out) / 'report.md'}, report.json, scores.csv")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m training.antideepfake", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    s = sub.add_parser("archs", help="list the released AntiDeepfake architectures")
    s.set_defaults(func=_cmd_archs)

    s = sub.add_parser("inspect", help="load a checkpoint strictly and describe it")
    s.add_argument("checkpoint")
    s.add_argument("--arch", default=None, help="architecture name (default: read off the checkpoint)")
    s.add_argument(
        "--trust-pickle", action="store_true", help="allow pickled Python objects (trusted files only)"
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_inspect)

    s = sub.add_parser("finetune", help="fine-tune on a manifest (RawBoost, channels, duration batching)")
    s.add_argument("--train", required=True, help="training manifest CSV (corpus or AntiDeepfake format)")
    s.add_argument("--valid", default=None, help="validation manifest (default: the dev split of --train)")
    s.add_argument("--out", required=True, help="run folder (checkpoints, log.jsonl, config.json)")
    s.add_argument(
        "--arch", default=None, choices=sorted(ARCHITECTURES), help="default: w2v_small, or --init's"
    )
    s.add_argument("--tiny", action="store_true", help="a tiny random model of the same family (smoke runs)")
    s.add_argument("--init", default=None, help="checkpoint to start from (released .ckpt/.safetensors)")
    s.add_argument("--data-root", default=None, help="replaces $ROOT in AntiDeepfake protocol paths")
    s.add_argument("--train-split", default="train")
    s.add_argument("--valid-split", default="dev")
    s.add_argument("--no-valid", action="store_true", help="no validation (best.ckpt is not written)")
    s.add_argument("--steps", type=int, default=1000)
    s.add_argument("--lr", type=float, default=1e-6)
    s.add_argument("--warmup", type=int, default=100)
    s.add_argument("--max-batch-seconds", type=float, default=100.0)
    s.add_argument("--max-batch-size", type=int, default=64)
    s.add_argument("--crop-min", type=float, default=10.0)
    s.add_argument("--crop-max", type=float, default=13.0)
    s.add_argument("--rawboost-algo", type=int, default=5, help="0 off; 1-8 as in Tak et al. (5 = LnL+ISD)")
    s.add_argument("--mulaw-prob", type=float, default=0.0, help="share of clips through mu-law 8 kHz")
    s.add_argument("--g722-prob", type=float, default=0.0, help="share of clips through G.722 (ffmpeg)")
    s.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    s.add_argument("--freeze-feature-encoder", action="store_true")
    s.add_argument("--valid-every", type=int, default=200)
    s.add_argument("--save-every", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_finetune)

    s = sub.add_parser("evaluate", help="EER/AUC pooled, per subset and per spoof system on a manifest")
    s.add_argument(
        "--model", required=True, help="checkpoint (.ckpt/.safetensors) or exported bundle (.onnx)"
    )
    s.add_argument("--manifest", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--arch", default=None)
    s.add_argument("--split", default=None, help="keep one split of the manifest (e.g. eval)")
    s.add_argument("--data-root", default=None)
    s.add_argument(
        "--threshold", type=float, default=0.0, help="decision threshold on logit(fake)-logit(real)"
    )
    s.add_argument("--max-seconds", type=float, default=None, help="score at most this much of each file")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--trust-pickle", action="store_true")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_evaluate)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from training.antideepfake.audio import AudioReadError, CodecError
    from training.antideepfake.checkpoint import CheckpointError
    from training.antideepfake.data import ManifestError

    user_errors = (CheckpointError, ManifestError, AudioReadError, CodecError, FileNotFoundError)
    try:
        return int(args.func(args))
    except user_errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
