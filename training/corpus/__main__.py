"""Command line: ``python -m training.corpus build | stats``."""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from training.corpus.manifest import ManifestRow


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
    console = Console(stderr=True, soft_wrap=True)

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

    from training.corpus.manifest import ManifestError, read_manifest

    try:
        rows = read_manifest(args.manifest)
    except ManifestError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    print(stats_table(rows, markdown=args.markdown))
    return 0


@dataclass
class _Group:
    clips: set[str] = field(default_factory=set)
    hours: float = 0.0
    speakers: set[str] = field(default_factory=set)
    channels: set[str] = field(default_factory=set)


def stats_table(rows: list[ManifestRow], markdown: bool = False) -> str:
    """Clips, hours and speakers per (label, source or system, split), counted once per clip; the channels
    each clip is stored in are listed separately (every clip is stored in every channel of the build)."""
    groups: dict[tuple[str, str, str], _Group] = defaultdict(_Group)
    seen: set[str] = set()
    for r in rows:
        g = groups[(r.label, r.source if r.label == "bonafide" else r.system, r.split)]
        g.channels.add(r.channel)
        uid = r.clip_id or r.path
        if uid not in seen:
            seen.add(uid)
            g.clips.add(uid)
            g.hours += r.duration / 3600.0
            g.speakers.add(r.speaker)
    header = ["label", "source/system", "split", "clips", "hours", "speakers", "channels"]
    lines = [
        [*key, str(len(g.clips)), f"{g.hours:.2f}", str(len(g.speakers)), "+".join(sorted(g.channels))]
        for key, g in sorted(groups.items())
    ]
    totals: dict[tuple[str, str], _Group] = defaultdict(_Group)
    for (label, _, split), g in groups.items():
        totals[(label, split)].clips |= g.clips
        totals[(label, split)].hours += g.hours
    for (label, split), t in sorted(totals.items()):
        lines.append(
            [label, "**all**" if markdown else "ALL", split, str(len(t.clips)), f"{t.hours:.2f}", "", ""]
        )
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
    else:
        out = ["\t".join(cells) for cells in [header, *lines]]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
