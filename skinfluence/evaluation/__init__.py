"""Ground truths (actual leave-one-out retraining) and agreement metrics."""

from ._loo import loo_change
from ._metrics import loo_correlation, loo_slope, make_loo_scorer

__all__ = ["loo_change", "loo_correlation", "loo_slope", "make_loo_scorer"]
