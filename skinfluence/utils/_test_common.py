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


_FLAGS_COUNT_ROWS = (
    "the detector flags rows: its 'auto' fence (Q3 + 1.5 IQR) and its "
    "contamination share are taken over rows, so k repeated copies of a row "
    "count k times where one row of weight k counts once, and the cleaned sets "
    "(hence the refits) differ. The scores themselves match repeated rows: "
    "tests/estimators/test_containers.py::test_integer_weights_are_repeated_rows; "
    "a zero weight equals removing the row: ...::test_zero_weight_is_removal."
)

#: Failures of a clean-then-refit estimator whose cleaner is a detector
#: (``cleaner=None`` means ``NoisyLabelDetector``).
EXPECTED_FAILED_WITH_DETECTOR: dict[str, str] = {
    "check_sample_weight_equivalence_on_dense_data": _FLAGS_COUNT_ROWS,
    "check_sample_weight_equivalence_on_sparse_data": _FLAGS_COUNT_ROWS,
}


def expected_failed_checks(estimator: BaseEstimator) -> dict[str, str]:
    """The reasons table entry for ``estimator`` (empty when all pass)."""
    inner = getattr(estimator, "estimator", None)
    key = (type(estimator), type(inner).__name__)
    cleaner = getattr(estimator, "cleaner", False)
    detects = cleaner is None or isinstance(cleaner, NoisyLabelDetector)
    return {
        **EXPECTED_FAILED_BY_CLASS.get(type(estimator), {}),
        **EXPECTED_FAILED_CHECKS.get(key, {}),
        **(EXPECTED_FAILED_WITH_DETECTOR if detects else {}),
    }
