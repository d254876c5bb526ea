"""``python -m training.fusion fit``: fit the fusion of a one-class and a supervised bundle on the dev split.

Both bundles score the same dev windows (onnxruntime, as in the runtime): the dev split's real speakers and
the dev holdout of the synthesizers the supervised model trained on (the clips
:func:`training.supervised.data.is_spoof_dev` selects). The fusion file is written next to the bundles, which
it names by file name and SHA-256; run it with ``stream-guard scan --model NAME.fusion.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def dev_window_scores(
    bundles: dict[str, Path], manifest: Path, dev_split: str, spoof_dev_fraction: float, max_clips: int,
    hop_s: float, threads: int = 2,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:  # fmt: skip
    """Aligned window scores ``[N, n_bundles]`` of dev real and dev synthetic clips."""
    from stream_guard.backends import OnnxRuntimeBackend
    from training.oneclass.data import AudioCache, read_manifest, require, select, subsample
    from training.supervised.data import is_spoof_dev
    from training.supervised.scoring import score_windows

    clips = read_manifest(manifest)
    real = require(select(clips, dev_split, "real"), f"split {dev_split!r}, label real", manifest)
    spoof = require(
        [c for c in select(clips, None, "spoof") if is_spoof_dev(c, spoof_dev_fraction)],
        "the dev holdout of the synthetic clips", manifest,
    )  # fmt: skip
    real = subsample(real, max_clips, key="fusion-real")
    spoof = subsample(spoof, max_clips, key="fusion-spoof")
    backends = {role: OnnxRuntimeBackend(p, provider="cpu", threads=threads) for role, p in bundles.items()}
    metas = [b.metadata for b in backends.values()]
    window_s = metas[0].window_s
    min_audio_s = max(m.min_audio_s for m in metas)
    cache = AudioCache(metas[0].sample_rate)
    out = []
    for group in (real, spoof):
        per_role = [
            score_windows(
                lambda a, b=b: b.infer(a)[0], group, cache, window_s, hop_s, min_audio_s, metas[0].sample_rate
            )
            for b in backends.values()
        ]
        paths = [p for p in per_role[0] if all(p in r for r in per_role)]
        out.append(np.concatenate([np.stack([r[p] for r in per_role], axis=1) for p in paths]))
    for b in backends.values():
        b.close()
    return out[0], out[1], {"real_clips": len(real), "spoof_clips": len(spoof)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.fusion", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit a fusion file on the dev split")
    f.add_argument(
        "--oneclass", type=Path, required=True, help="one-class bundle (its map is the explanation)"
    )
    f.add_argument("--supervised", type=Path, required=True, help="supervised bundle")
    f.add_argument("--manifest", type=Path, required=True)
    f.add_argument("--out", type=Path, required=True, help="NAME.fusion.json, in the folder of the bundles")
    f.add_argument("--name", default="fused-stfpm-supervised")
    f.add_argument("--dev-split", default="dev")
    f.add_argument("--spoof-dev-fraction", type=float, default=0.2)
    f.add_argument("--max-clips", type=int, default=300, help="per class")
    f.add_argument("--hop-s", type=float, default=1.0)
    f.add_argument(
        "--quantile", type=float, default=0.95, help="threshold: quantile of fused real dev windows"
    )
    args = p.parse_args(argv)

    from stream_guard.bundle import BundleError
    from training.oneclass.data import DataError

    from .fit import FusionError, fit_spec

    bundles = {"oneclass": args.oneclass, "supervised": args.supervised}
    for role, path in bundles.items():
        if path.resolve().parent != args.out.resolve().parent:
            print(f"training.fusion: error: the {role} bundle {path} must be in the folder of {args.out} "
                  "(the fusion file names its members by file name)", file=sys.stderr)  # fmt: skip
            return 2
    try:
        real, spoof, counts = dev_window_scores(
            bundles, args.manifest, args.dev_split, args.spoof_dev_fraction, args.max_clips, args.hop_s
        )
        spec = fit_spec(
            args.name, bundles, real, spoof, args.quantile,
            fitted_on=(
                f"logistic regression on dev window scores of {args.manifest}: {len(real)} real windows "
                f"({counts['real_clips']} clips, split {args.dev_split!r}) vs {len(spoof)} synthetic windows "
                f"({counts['spoof_clips']} clips, dev holdout); threshold = {100 * args.quantile:g}th "
                "percentile of the fused real dev windows"
            ),
        )  # fmt: skip
    except (BundleError, DataError, FusionError) as exc:
        print(f"training.fusion: error: {exc}", file=sys.stderr)
        return 2
    spec.write(args.out)
    print(json.dumps(spec.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
