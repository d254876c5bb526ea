"""torch -> ONNX bundles (DESIGN.md, "The model bundle") with parity checks: ``python -m export --help``."""
