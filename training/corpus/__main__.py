"""Command line: ``python -m training.corpus build | stats``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.corpus", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build or resume a corpus profile into the cache")
    b.add_argument("--profile", choices=("full", "tiny"), default="full")
    b.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="cache folder (default: $STREAM_GUARD_CACHE or ~/.cache/stream-guard)",
    )
    b.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    b.add_argument("--debs", type=Path, default=None, help="folder with already downloaded .deb files")
    b.add_argument(
        "--channels",
        default="wideband,telephone",
        help="comma-separated channel sets to store (default: wideband,telephone)",
    )
    s = sub.add_parser(
        "stats", help="clip counts and hours of a manifest per source/system, split and channel"
    )
    s.add_argument("manifest", type=Path)
    s.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)
    console = Console(stderr=True)

    if args.command == "build":
        from training.corpus.build import CHANNELS, ProcessConfig, build

        channels = tuple(c.strip() for c in args.channels.split(",") if c.strip())
        bad = [c for c in channels if c not in CHANNELS]
        if bad or not channels:
            console.print(
                f"[red]--channels: unknown channel(s) {bad}; choose from {', '.join(CHANNELS)}[/red]"
            )
            return 2
        if args.jobs < 1:
            console.print("[red]--jobs must be at least 1[/red]")
            return 2
        if args.debs is not None and not args.debs.is_dir():
            console.print(f"[red]--debs {args.debs}: not a folder[/red]")
            return 2
        report = build(
            args.profile, args.cache, args.jobs, args.debs, ProcessConfig(channels=channels), console
        )
        print(report.manifest)
        return 0 if report.rows > 0 else 1

    from training.corpus.manifest import ManifestError, read_manifest, summarize

    try:
        rows = read_manifest(args.manifest)
    except ManifestError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    keyed = [
        (r.label, r.source if r.label == "bonafide" else r.system, r.split, r.channel, r.duration)
        for r in rows
    ]
    from collections import defaultdict

    acc: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0.0])
    )
    channels = sorted({k[3] for k in keyed})
    for label, name, split, channel, dur in keyed:
        acc[(label, name, split)][channel][0] += 1
        acc[(label, name, split)][channel][1] += dur / 3600.0
    header = (
        ["label", "source/system", "split"]
        + [f"{c} clips" for c in channels]
        + [f"{c} hours" for c in channels]
    )
    lines = []
    for key in sorted(acc):
        cells = (
            list(key)
            + [str(int(acc[key][c][0])) for c in channels]
            + [f"{acc[key][c][1]:.2f}" for c in channels]
        )
        lines.append(cells)
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for cells in lines:
            print("| " + " | ".join(cells) + " |")
    else:
        for cells in [header] + lines:
            print("\t".join(cells))
    totals = summarize(rows, ("label", "split"))
    print()
    for (label, split), (n, h) in totals.items():
        print(f"{label} {split}: {n} rows, {h:.2f} h (all channels)")
    _ = sys  # keep the import explicit for embedding in other tools
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
