"""Every supported scikit-learn model through every estimator, weighted or not.

A smoke matrix on small data: each estimator fits, its outputs have the
documented shapes and are finite, and weights change the answer (they are
not silently dropped).  Correctness against refits lives in
tests/models/test_linear_families.py and tests/models/test_mlp.py.
"""

import warnings

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import (
    GammaRegressor,
    HuberRegressor,
    LinearRegression,
    LogisticRegression,
    LogisticRegressionCV,
    PoissonRegressor,
    Ridge,
    RidgeClassifier,
    RidgeClassifierCV,
    RidgeCV,
    SGDClassifier,
    SGDRegressor,
    TweedieRegressor,
)
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import (
    CleanedClassifier,
    CleanedRegressor,
    InfluenceScorer,
    NoisyLabelDetector,
    Relabeler,
)
from skinfluence.exceptions import NotAtOptimumWarning


def _data(kind):
    if kind == "binary":
        X, y = load_breast_cancer(return_X_y=True)
        return StandardScaler().fit_transform(X)[:90, :8], y[:90]
    if kind == "multiclass":
        X, y = load_iris(return_X_y=True)
        return X[::2], np.array(["setosa", "versicolor", "virginica"])[y[::2]]
    if kind == "positive":
        X, y = load_diabetes(return_X_y=True)
        return StandardScaler().fit_transform(X)[:90, :5], y[:90] / 100.0
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X)[:90], y[:90]


MODELS = [
    (LogisticRegression(), "binary"),
    (LogisticRegression(max_iter=1000), "multiclass"),
    (
        LogisticRegressionCV(
            Cs=2,
            cv=2,
            l1_ratios=(0.0,),
            scoring="neg_log_loss",
            use_legacy_attributes=False,
        ),
        "binary",
    ),
    (RidgeClassifier(), "binary"),
    (RidgeClassifierCV(), "multiclass"),
    (SGDClassifier(loss="log_loss", random_state=0), "binary"),
    (SGDClassifier(loss="log_loss", random_state=0), "multiclass"),
    (LinearRegression(), "regression"),
    (Ridge(), "regression"),
    (RidgeCV(), "regression"),
    (SGDRegressor(random_state=0), "regression"),
    (PoissonRegressor(), "positive"),
    (GammaRegressor(), "positive"),
    (TweedieRegressor(power=1.5), "positive"),
    (HuberRegressor(max_iter=1000), "regression"),
    (
        MLPClassifier(
            hidden_layer_sizes=(4,),
            solver="lbfgs",
            alpha=1e-2,
            max_iter=200,
            random_state=0,
        ),
        "multiclass",
    ),
    (
        MLPRegressor(
            hidden_layer_sizes=(4,),
            solver="lbfgs",
            alpha=1e-2,
            max_iter=200,
            random_state=0,
        ),
        "regression",
    ),
]


def _id(case):
    model, kind = case
    return f"{type(model).__name__}-{kind}"


@pytest.fixture(params=MODELS, ids=[_id(c) for c in MODELS])
def case(request):
    model, kind = request.param
    X, y = _data(kind)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    return clone(model), X, y, w


def _quiet():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore", NotAtOptimumWarning)  # SGD, few iterations
    warnings.simplefilter("ignore", UserWarning)
    from sklearn.exceptions import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)
    return ctx


def test_influence_scorer(case):
    model, X, y, w = case
    ctx = _quiet()
    try:
        plain = InfluenceScorer(model).fit(X, y)
        weighted = InfluenceScorer(model).fit(X, y, sample_weight=w)
        piped = InfluenceScorer(make_pipeline(StandardScaler(), model)).fit(
            X, y, sample_weight=w
        )
    finally:
        ctx.__exit__(None, None, None)
    S, Sw = plain.influence(X[:3], y[:3]), weighted.influence(X[:3], y[:3])
    assert S.shape == Sw.shape == (3, len(y))
    assert np.isfinite(S).all() and np.isfinite(Sw).all()
    assert not np.allclose(S, Sw)
    assert piped.influence(X[:3], y[:3]).shape == (3, len(y))
    assert np.isfinite(weighted.self_influence_).all()
    assert weighted.transform(X[:2]).shape == (2, len(y))


def test_detector_and_cleaner(case):
    model, X, y, w = case
    ctx = _quiet()
    try:
        for method in ("self_influence", "loss"):
            det = NoisyLabelDetector(model, method=method, contamination=0.1)
            det.fit(X, y, sample_weight=w)
            assert det.noisy_mask_.sum() == round(0.1 * len(y))
        cleaned_cls = CleanedClassifier if is_classifier(model) else CleanedRegressor
        cleaned = cleaned_cls(model, NoisyLabelDetector(model, contamination=0.1))
        cleaned.fit(X, y, sample_weight=w)
    finally:
        ctx.__exit__(None, None, None)
    assert len(cleaned.cleaner_.sample_indices_) == len(y) - round(0.1 * len(y))
    assert cleaned.predict(X[:3]).shape == (3,)


CLASSIFIERS = [c for c in MODELS if is_classifier(c[0])]


@pytest.mark.parametrize("model, kind", CLASSIFIERS, ids=[_id(c) for c in CLASSIFIERS])
def test_relabeler(model, kind):
    X, y = _data(kind)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    model = clone(model)
    ctx = _quiet()
    try:
        rel = Relabeler(model, method="label_influence", max_fraction=0.1).fit(
            X, y, sample_weight=w, X_val=X[::3], y_val=y[::3]
        )
    finally:
        ctx.__exit__(None, None, None)
    assert rel.y_relabeled_.shape == y.shape
    assert set(np.unique(rel.y_relabeled_)) <= set(np.unique(y))


def test_relabeler_refuses_a_regressor():
    X, y = _data("regression")
    with pytest.raises(ValueError, match="Relabeler needs a classifier"):
        Relabeler(Ridge()).fit(X, y)
