"""Instances and the expected-failure table for scikit-learn's common checks.

Every entry of ``EXPECTED_FAILED_CHECKS`` names a check and the reason it
cannot pass; an empty table is a claim that every check passes.
"""

from __future__ import annotations

import warnings
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

#: Torch estimators, keyed by class name and the type name of their ``module``
#: (no torch import here): a module instance has a fixed output shape, a
#: callable ``module(n_features, n_outputs)`` adapts to each data set and
#: passes every check.
EXPECTED_FAILED_TORCH: dict[tuple[str, str], dict[str, str]] = {
    ("TorchRegressor", "Sequential"): {
        "check_regressor_multioutput": (
            "the module instance is built with one output, so it cannot fit the "
            "check's 5 targets (fit refuses the shape mismatch); the multi-output "
            "path is checked with a callable module."
        ),
    },
}

_SCORE_SAMPLES_NEEDS_Y = (
    "score_samples(X, y) rates labelled rows (how likely each label is wrong), "
    "so it needs y, and these checks call it with X alone. Its row-order and "
    "subset invariance with y: tests/estimators/test_cleaning.py::"
    "test_score_samples_is_per_row."
)
_LABELLED_SCORE_SAMPLES = {
    "check_methods_sample_order_invariance": _SCORE_SAMPLES_NEEDS_Y,
    "check_methods_subset_invariance": _SCORE_SAMPLES_NEEDS_Y,
}

#: Failures shared by every instance of a class, whatever it wraps.
EXPECTED_FAILED_BY_CLASS: dict[type, dict[str, str]] = {
    InfluenceScorer: {
        "check_sample_weight_equivalence_on_dense_data": _WEIGHTS_VS_REPEATS,
        "check_sample_weight_equivalence_on_sparse_data": _WEIGHTS_VS_REPEATS,
    },
    NoisyLabelDetector: _LABELLED_SCORE_SAMPLES,
    Relabeler: _LABELLED_SCORE_SAMPLES,
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
    # the checks fit without a validation set, which Relabeler()'s "auto"
    # (VM) refuses; the method that runs without one is named explicitly
    yield Relabeler(method="label_influence")
    yield CleanedClassifier()
    yield CleanedClassifier(cleaner=Relabeler(method="label_influence"))
    yield CleanedRegressor()
    yield from _torch_estimators()


def _torch_estimators() -> Iterator[BaseEstimator]:
    """Small torch networks (few L-BFGS steps), when torch is installed."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is an optional dependency
        return
    from ..models import TorchClassifier, TorchRegressor

    small = {"max_iter": 20, "random_state": 0}
    yield TorchClassifier(torch.nn.Linear, **small)
    yield TorchRegressor(torch.nn.Linear, **small)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "lazy modules are new"
        lazy = torch.nn.Sequential(torch.nn.LazyLinear(1))
    yield TorchRegressor(lazy, **small)


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
    module = getattr(estimator, "module", None)
    torch_key = (type(estimator).__name__, type(module).__name__)
    return {
        **EXPECTED_FAILED_BY_CLASS.get(type(estimator), {}),
        **EXPECTED_FAILED_CHECKS.get(key, {}),
        **(EXPECTED_FAILED_WITH_DETECTOR if detects else {}),
        **EXPECTED_FAILED_TORCH.get(torch_key, {}),
    }
