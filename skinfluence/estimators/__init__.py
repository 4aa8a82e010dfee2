"""scikit-learn estimators: orchestration only, the math lives below."""

from ._cleaning import (
    CleanedClassifier,
    CleanedRegressor,
    NoisyLabelDetector,
    Relabeler,
)
from ._dask import DaskInfluenceScorer
from ._influence_scorer import InfluenceScorer

__all__ = [
    "CleanedClassifier",
    "CleanedRegressor",
    "DaskInfluenceScorer",
    "InfluenceScorer",
    "NoisyLabelDetector",
    "Relabeler",
]
