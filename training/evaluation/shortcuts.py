"""Shortcut check through the runtime, for any model the runtime loads (a bundle, a fused pair, a short name).

A detector that learned a recording shortcut flips its verdict when nothing but the channel changes. This
check takes real clips of one split and channel, makes the shortcut copies (1 s of digital silence on both
sides, a 3.4 kHz low-pass, 12 dB quieter), scans every version exactly as ``stream-guard scan`` does (windows,
abstaining, summary verdict at the model's threshold) and counts clips whose summary verdict becomes
"synthetic" only after the change. The one-class trainer's own check (``training.oneclass evaluate``) measures
the raw score of one checkpoint; this one measures what a user of the shipped default would see.

    python -m training.evaluation.shortcuts --model default --clips 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfiltfilt

from training.audio_io import AudioReadError, read_audio
from training.corpus.manifest import ManifestError, read_manifest

RATE = 16000


def _low_pass(cutoff_hz: float) -> Callable[[np.ndarray], np.ndarray]:
    sos = butter(8, cutoff_hz, "lowpass", fs=RATE, output="sos")
    return lambda x: sosfiltfilt(sos, x).astype(np.float32)


def _pad(seconds: float) -> Callable[[np.ndarray], np.ndarray]:
    zeros = np.zeros(int(seconds * RATE), np.float32)
    return lambda x: np.concatenate([zeros, x, zeros])


CHANGES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "1 s digital silence on both sides": _pad(1.0),
    "low-pass 3.4 kHz": _low_pass(3400.0),
    "12 dB quieter": lambda x: (x * np.float32(10 ** (-12 / 20))).astype(np.float32),
}


async def _verdicts(model: str | None, clips: list[np.ndarray]) -> dict[str, list[bool]]:
    from stream_guard import AudioFormat, Engine
    from stream_guard.events import SummaryEvent

    fmt = AudioFormat(RATE, "float32", 1)
    out: dict[str, list[bool]] = {"original": [], **{name: [] for name in CHANGES}}
    async with Engine.from_bundle(model, provider="cpu", threads=1) as engine:
        for i, x in enumerate(clips, 1):
            for name, version in [("original", x), *((n, f(x)) for n, f in CHANGES.items())]:
                events = await engine.scan(version, fmt)
                summary = next(e for e in reversed(events) if isinstance(e, SummaryEvent))
                out[name].append(summary.verdict == "synthetic")
            print(f"\r{i}/{len(clips)} clips", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return out


def run(model: str | None, manifest: Path, split: str, channel: str, n_clips: int, seed: int) -> dict:
    rows = [
        r
        for r in read_manifest(manifest)
        if r.split == split and r.label == "bonafide" and r.channel == channel
    ]
    if not rows:
        raise SystemExit(f"{manifest}: no real clips in split {split!r}, channel {channel!r}")
    pick = np.random.default_rng(seed).choice(len(rows), min(n_clips, len(rows)), replace=False)
    clips = []
    for i in sorted(pick):
        path = Path(rows[i].path)
        try:
            x, rate = read_audio(path if path.is_absolute() else manifest.parent / path, sample_rate=RATE)
        except AudioReadError as exc:
            raise SystemExit(f"{path}: {exc}") from None
        assert rate == RATE
        clips.append(x.astype(np.float32))
    verdicts = asyncio.run(_verdicts(model, clips))
    before = np.array(verdicts["original"])
    result: dict = {"model": model or "default", "split": split, "channel": channel, "clips": len(clips)}
    result["changes"] = {}
    for name in CHANGES:
        after = np.array(verdicts[name])
        result["changes"][name] = {
            "flagged_before": int(before.sum()),
            "flagged_after": int(after.sum()),
            "newly_flagged": int((after & ~before).sum()),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.evaluation.shortcuts",
        description="Count real clips whose runtime verdict turns 'synthetic' only after a channel change.",
    )
    ap.add_argument("--model", default=None, help="any --model the runtime accepts (default: the fused pair)")
    ap.add_argument("--manifest", type=Path, default=Path("~/.cache/stream-guard/corpus/full/manifest.csv"))
    ap.add_argument("--split", default="eval")
    ap.add_argument("--channel", default="wideband")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args(argv)
    try:
        result = run(args.model, args.manifest.expanduser(), args.split, args.channel, args.clips, args.seed)
    except ManifestError as exc:
        raise SystemExit(str(exc)) from None
    print(f"{result['model']}: {result['clips']} real {args.channel} clips of split {args.split!r}")
    for name, c in result["changes"].items():
        print(
            f"  {name}: flagged {c['flagged_before']} -> {c['flagged_after']}, "
            f"newly flagged {c['newly_flagged']}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
