"""Ground truths (leave-one-out retraining, PBRF) and agreement metrics."""

from ._detection import detection_report, relabel_accuracy
from ._loo import loo_change, response_changes
from ._metrics import loo_correlation, loo_slope, make_loo_scorer
from ._pbrf import pbrf_change, proximal_change

__all__ = [
    "detection_report",
    "loo_change",
    "loo_correlation",
    "loo_slope",
    "make_loo_scorer",
    "pbrf_change",
    "proximal_change",
    "relabel_accuracy",
    "response_changes",
]
