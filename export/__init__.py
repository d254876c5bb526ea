"""torch -> ONNX bundles (DESIGN.md, "The model bundle") with parity checks. Run ``python -m export
--help``."""
