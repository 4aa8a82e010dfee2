"""Instances and the expected-failure table for scikit-learn's common checks.

Every entry of ``EXPECTED_FAILED_CHECKS`` names a check and the reason it
cannot pass; an empty table is a claim that every check passes.
"""

from __future__ import annotations

from collections.abc import Iterator

from sklearn.base import BaseEstimator
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..estimators import (
    CleanedClassifier,
    CleanedRegressor,
    InfluenceScorer,
    NoisyLabelDetector,
    Relabeler,
)

#: (estimator class, wrapped model name) -> {check name: reason}.
EXPECTED_FAILED_CHECKS: dict[tuple[type, str], dict[str, str]] = {}

_WEIGHTS_VS_REPEATS = (
    "transform returns one column per training row (the influence of that row), "
    "so repeating a row adds a column while weighting it does not: the outputs "
    "differ in shape and meaning by design. The weighted fit itself is checked "
    "against refits in tests/models/test_linear_families.py."
)

#: Failures shared by every instance of a class, whatever it wraps.
EXPECTED_FAILED_BY_CLASS: dict[type, dict[str, str]] = {
    InfluenceScorer: {
        "check_sample_weight_equivalence_on_dense_data": _WEIGHTS_VS_REPEATS,
        "check_sample_weight_equivalence_on_sparse_data": _WEIGHTS_VS_REPEATS,
    },
}


def estimators_to_check() -> Iterator[BaseEstimator]:
    """Small, seeded instances covering each wrapped model and backend."""
    yield InfluenceScorer()
    yield InfluenceScorer(LogisticRegression(C=10.0), curvature="cg")
    yield InfluenceScorer(Ridge(alpha=0.5))
    yield InfluenceScorer(LinearRegression(), damping=1e-6)
    yield InfluenceScorer(make_pipeline(StandardScaler(), LogisticRegression()))
    yield NoisyLabelDetector()
    yield NoisyLabelDetector(Ridge(), method="loss", contamination=0.1)
    yield Relabeler()
    yield CleanedClassifier()
    yield CleanedClassifier(cleaner=Relabeler())
    yield CleanedRegressor()


def expected_failed_checks(estimator: BaseEstimator) -> dict[str, str]:
    """The reasons table entry for ``estimator`` (empty when all pass)."""
    inner = getattr(estimator, "estimator", None)
    key = (type(estimator), type(inner).__name__)
    return {
        **EXPECTED_FAILED_BY_CLASS.get(type(estimator), {}),
        **EXPECTED_FAILED_CHECKS.get(key, {}),
    }
