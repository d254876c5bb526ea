"""Calibrated fusion of the one-class and supervised detectors: a logistic regression on dev-split window
scores, written as a fusion file that :class:`stream_guard.backends.fused.FusedBackend` applies at run time.

``python -m training.fusion fit --oneclass A.onnx --supervised B.onnx --manifest M --out NAME.fusion.json``
"""

from .fit import fit_logistic_regression, fit_spec

__all__ = ["fit_logistic_regression", "fit_spec"]
