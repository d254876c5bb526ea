"""Detector-agnostic evaluation: metrics (EER, AUC, bootstrap CIs, DET curves, false-alarm rates) and a report
writer (markdown + JSON + plots in a run folder). Any detector family feeds it scores and labels."""

from .metrics import auc, bootstrap_ci, det_curve, eer, false_alarm_rate, roc_points
from .report import ReportWriter

__all__ = ["ReportWriter", "auc", "bootstrap_ci", "det_curve", "eer", "false_alarm_rate", "roc_points"]
