#!/usr/bin/env python3
"""Run ``stream-guard bench`` from a source checkout: ``python benchmarks/bench.py [options]``.

Same options as ``stream-guard bench --help``; reports land in benchmarks/results/ (JSON + PNG).
"""

import sys

from stream_guard.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
