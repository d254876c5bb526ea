#!/usr/bin/env python3
"""Refresh what the README shows of the embedded default model: the map picture and the example summary line.

Run after the default bundle changes, from the repository root:

    .venv/bin/python scripts/refresh_readme_example.py

It runs `stream-guard scan stream_guard/examples/formant-vowels.wav` with `--map-png docs/scan-map.png` and
``--jsonl -``, and replaces the JSON block under "(wrapped here):" in README.md with the new summary event.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = "stream_guard/examples/formant-vowels.wav"
MARKER = "(wrapped here):\n\n"


def wrap_json_line(line: str, width: int = 108) -> str:
    """Break one JSON object line between fields so it fits the README's width."""
    parts = re.split(r'(?<=,)(?=")', line)
    lines, current = [], ""
    for part in parts:
        if current and len(current) + len(part) > width:
            lines.append(current)
            current = " " + part
        else:
            current += part
    lines.append(current)
    return "\n".join(lines)


def main() -> int:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream_guard.cli",
            "scan",
            CLIP,
            "--jsonl",
            "-",
            "--quiet",
            "--map-png",
            "docs/scan-map.png",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        return result.returncode
    summary = result.stdout.splitlines()[-1]
    if json.loads(summary).get("type") != "summary":
        sys.stderr.write("the last event is not a summary\n")
        return 1
    readme = ROOT / "README.md"
    text = readme.read_text()
    start = text.index(MARKER) + len(MARKER)
    end = text.index("```", text.index("```json", start) + 7) + 3
    readme.write_text(text[:start] + "```json\n" + wrap_json_line(summary) + "\n```" + text[end:])
    print("updated README.md and docs/scan-map.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
