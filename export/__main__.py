"""``python -m export FAMILY ...``: export a trained detector as a stream-guard bundle;
``python -m export triton BUNDLE --repo DIR``: a Triton model repository serving a bundle."""

from __future__ import annotations

import sys

FAMILIES = {"oneclass": "export.oneclass", "antideepfake": "export.antideepfake", "triton": "export.triton"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in FAMILIES:
        print(f"usage: python -m export {{{','.join(FAMILIES)}}} --help", file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(FAMILIES[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
