"""Ground truths (leave-one-out and subset retraining, PBRF) and agreement metrics."""

from ._detection import detection_report, relabel_accuracy
from ._lds import LDSGroundTruth, lds, lds_from_scores, lds_ground_truth
from ._loo import loo_change, response_changes
from ._metrics import loo_correlation, loo_slope, make_loo_scorer
from ._pbrf import pbrf_change, proximal_change

__all__ = [
    "LDSGroundTruth",
    "detection_report",
    "lds",
    "lds_from_scores",
    "lds_ground_truth",
    "loo_change",
    "loo_correlation",
    "loo_slope",
    "make_loo_scorer",
    "pbrf_change",
    "proximal_change",
    "relabel_accuracy",
    "response_changes",
]
