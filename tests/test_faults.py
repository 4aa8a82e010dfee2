"""The fault table: every public estimator and curvature backend, fed bad input.

Each row is one fault (bad data, labels, indices, parameters, models,
convergence, conditioning, persistence) and the outcome it must get:

- ``Error(type, match)``: that exception, its message naming the problem and
  the fix (``match`` is a regular expression searched in the message);
- ``Warn(category, match)``: the call succeeds and emits that warning;
- ``Result(check)``: the call succeeds and ``check`` verifies the answer
  against ground truth independent of the code under test (a refit, a closed
  form, an identity between two public methods) or against an invariant.

No row accepts a bare numpy/scipy/torch exception.  The row ids start with the
estimator they exercise (``scorer-``, ``detector-``, ``relabeler-``,
``cleaned-``, ``torch-``, ``backend-``), which is how the rows are counted by
outcome per estimator.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted

from skinfluence import (
    CleanedClassifier,
    CleanedRegressor,
    Finetuner,
    InfluenceScorer,
    NoisyLabelDetector,
    Relabeler,
)
from skinfluence.curvature import CURVATURES
from skinfluence.exceptions import NotAtOptimumWarning


@dataclass(frozen=True)
class Error:
    type: type
    match: str


@dataclass(frozen=True)
class Warn:
    category: type
    match: str


@dataclass(frozen=True)
class Result:
    check: Callable[[Any], None]


# --------------------------------------------------------------------------
# small data, built once
# --------------------------------------------------------------------------


@cache
def clf_data():
    rng = np.random.RandomState(0)
    X = rng.randn(40, 3)
    y = (X[:, 0] - 0.5 * X[:, 1] + 0.5 * rng.randn(40) > 0).astype(int)
    return X, y


@cache
def val_data():
    rng = np.random.RandomState(1)
    X = rng.randn(30, 3)
    y = (X[:, 0] - 0.5 * X[:, 1] > 0).astype(int)
    return X, y


@cache
def reg_data():
    rng = np.random.RandomState(2)
    X = rng.randn(30, 3)
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.randn(30)
    return X, y


@cache
def flipped():
    """Separable-ish data with 6 known flipped labels (the ground truth)."""
    rng = np.random.RandomState(3)
    X = rng.randn(80, 2)
    y_true = (X[:, 0] + X[:, 1] > 0).astype(int)
    margin = np.abs(X[:, 0] + X[:, 1])
    flips = np.argsort(-margin)[:6]  # confident points, wrongly labelled
    y = y_true.copy()
    y[flips] = 1 - y[flips]
    return X, y, flips


def _lr(**kw):
    return LogisticRegression(tol=1e-10, max_iter=10_000, **kw)


@cache
def scorer():
    return InfluenceScorer(_lr()).fit(*clf_data())


@cache
def reg_scorer():
    return InfluenceScorer(LinearRegression()).fit(*reg_data())


def _with(X, i, j, value):
    X = np.array(X, dtype=float)
    X[i, j] = value
    return X


def _refit_change(model, X, y, i):
    """Actual theta_{-i} - theta by refitting scikit-learn's own model."""
    full = clone(model).fit(X, y)
    keep = np.arange(len(X)) != i
    loo = clone(model).fit(X[keep], y[keep])
    theta = lambda m: np.r_[np.ravel(m.coef_), np.ravel(m.intercept_)]  # noqa: E731
    return theta(loo) - theta(full)


# --------------------------------------------------------------------------
# checks used by Result rows
# --------------------------------------------------------------------------


def _finite_square(S):
    n = len(clf_data()[0])
    assert S.shape == (n, n) and np.all(np.isfinite(S))


def _close_to_exact(S, rtol=1e-5):
    assert_allclose(S, scorer().influence(*clf_data()), rtol=rtol, atol=1e-8)


def _loo_matches(res):
    est, X, y, i, delta = res
    actual = _refit_change(est, X, y, i)
    assert_allclose(delta[0], actual, rtol=1e-6, atol=1e-10)


def _no_warning_of(category):
    def run(fn):
        with warnings.catch_warnings():
            warnings.simplefilter("error", category)
            return fn()

    return run


ROWS: list[tuple[str, Callable[[], Any], Any]] = []


def row(id_, expect):
    def deco(fn):
        ROWS.append((id_, fn, expect))
        return fn

    return deco


# --------------------------------------------------------------------------
# InfluenceScorer: data
# --------------------------------------------------------------------------
X0, y0 = clf_data()
Xr0, yr0 = reg_data()


row("scorer-X-nan", Error(ValueError, "NaN"))(
    lambda: InfluenceScorer(_lr()).fit(_with(X0, 0, 0, np.nan), y0)
)
row("scorer-X-inf", Error(ValueError, "infinity"))(
    lambda: InfluenceScorer(_lr()).fit(_with(X0, 0, 0, np.inf), y0)
)
row("scorer-y-nan", Error(ValueError, "NaN"))(
    lambda: InfluenceScorer(LinearRegression()).fit(
        Xr0, _with(yr0[:, None], 0, 0, np.nan)[:, 0]
    )
)
row("scorer-length-mismatch", Error(ValueError, "inconsistent numbers of samples"))(
    lambda: InfluenceScorer(_lr()).fit(X0, y0[:-1])
)
row("scorer-X-1d", Error(ValueError, "2D array"))(
    lambda: InfluenceScorer(_lr()).fit(X0[:, 0], y0)
)
row("scorer-no-rows", Error(ValueError, "0 sample"))(
    lambda: InfluenceScorer(_lr()).fit(X0[:0], y0[:0])
)
row("scorer-single-class", Error(ValueError, "class"))(
    lambda: InfluenceScorer(_lr()).fit(X0, np.zeros(40, dtype=int))
)
row("scorer-strings-as-X", Error(ValueError, "could not convert|string"))(
    lambda: InfluenceScorer(LinearRegression()).fit(np.full((30, 3), "a"), yr0)
)
row("scorer-query-wrong-width", Error(ValueError, "features"))(
    lambda: scorer().influence(X0[:, :2], y0)
)
row("scorer-query-nan", Error(ValueError, "NaN"))(
    lambda: scorer().influence(_with(X0, 1, 1, np.nan), y0)
)
row("scorer-query-length-mismatch", Error(ValueError, "inconsistent|samples"))(
    lambda: scorer().influence(X0, y0[:5])
)
row("scorer-query-unseen-label", Error(ValueError, "label|class"))(
    lambda: scorer().influence(X0[:3], np.array([0, 1, 7]))
)
row("scorer-query-loss-needs-y", Error(ValueError, "y"))(
    lambda: scorer().influence(X0[:3])
)
row("scorer-weights-negative", Error(ValueError, "sample_weight|negative"))(
    lambda: InfluenceScorer(_lr()).fit(X0, y0, sample_weight=-np.ones(40))
)
row("scorer-weights-wrong-length", Error(ValueError, "sample_weight|samples"))(
    lambda: InfluenceScorer(_lr()).fit(X0, y0, sample_weight=np.ones(7))
)

# --------------------------------------------------------------------------
# InfluenceScorer: parameters
# --------------------------------------------------------------------------
row("scorer-curvature-unknown", Error(ValueError, "curvature"))(
    lambda: InfluenceScorer(_lr(), curvature="newton").fit(X0, y0)
)
row("scorer-damping-negative", Error(ValueError, "damping"))(
    lambda: InfluenceScorer(_lr(), damping=-1.0).fit(X0, y0)
)
row("scorer-train-gradient-unknown", Error(ValueError, "train_gradient"))(
    lambda: InfluenceScorer(_lr(), train_gradient="hessian").fit(X0, y0)
)
row("scorer-batch-size-zero", Error(ValueError, "batch_size"))(
    lambda: InfluenceScorer(_lr(), batch_size=0).fit(X0, y0)
)
row("scorer-target-unknown", Error(ValueError, "target"))(
    lambda: scorer().influence(X0, y0, target="margin")
)
row("scorer-method-unknown", Error(ValueError, "method"))(
    lambda: scorer().influence(X0, y0, method="second_order")
)

# --------------------------------------------------------------------------
# InfluenceScorer: indices
# --------------------------------------------------------------------------
row("scorer-indices-empty", Result(lambda d: assert_allclose(d, np.zeros((0, 4)))))(
    lambda: scorer().parameter_change([])
)
row("scorer-indices-2d", Error(ValueError, "1-D.*np.ravel"))(
    lambda: scorer().parameter_change(np.array([[0, 1], [2, 3]]))
)
row("scorer-indices-out-of-range", Error(IndexError, r"must lie in \[-40, 40\)"))(
    lambda: scorer().parameter_change([40])
)
row("scorer-indices-float", Error(TypeError, "integers.*dtype=int"))(
    lambda: scorer().parameter_change([0.5])
)
row("scorer-mask-wrong-shape", Error(ValueError, r"shape \(40,\)"))(
    lambda: scorer().parameter_change(np.ones(39, dtype=bool))
)
row(
    "scorer-indices-negative",
    Result(lambda d: assert_allclose(d[0], d[1])),
)(lambda: scorer().parameter_change([-1, 39]))
row(
    "scorer-mask-equals-indices",
    Result(lambda d: assert_allclose(d[0], d[1])),
)(
    lambda: (
        scorer().parameter_change(np.arange(40) % 7 == 0),
        scorer().parameter_change(np.arange(0, 40, 7)),
    )
)
row("scorer-newton-indices-2d", Error(ValueError, "1-D"))(
    lambda: reg_scorer().parameter_change(np.zeros((2, 2), int), method="newton")
)

# --------------------------------------------------------------------------
# InfluenceScorer: models
# --------------------------------------------------------------------------
row(
    "scorer-unsupported-model",
    Error(TypeError, "no model adapter for KNeighbors.*Supported"),
)(lambda: InfluenceScorer(KNeighborsClassifier()).fit(X0, y0))
row("scorer-non-smooth-svc", Error(TypeError, "SVC"))(
    lambda: InfluenceScorer(SVC()).fit(X0, y0)
)
row("scorer-estimator-not-estimator", Error(ValueError, "estimator"))(
    lambda: InfluenceScorer("logistic").fit(X0, y0)
)
row("scorer-not-fitted", Error(NotFittedError, "not fitted"))(
    lambda: InfluenceScorer(_lr()).influence(X0, y0)
)
row("scorer-not-fitted-parameter-change", Error(NotFittedError, "not fitted"))(
    lambda: InfluenceScorer(_lr()).parameter_change([0])
)

# --------------------------------------------------------------------------
# InfluenceScorer: conditioning and convergence (decisions documented in
# InfluenceScorer.fit and the warnings' texts)
# --------------------------------------------------------------------------
_wide = np.random.RandomState(4).randn(10, 20)
_wide_y = np.random.RandomState(5).randn(10)
row(
    "scorer-interpolating-more-features-than-rows",
    Warn(UserWarning, "interpolates.*0 for every point.*Ridge"),
)(lambda: InfluenceScorer(LinearRegression(), curvature="exact").fit(_wide, _wide_y))
row("scorer-interpolating-cg", Warn(UserWarning, "interpolates"))(
    lambda: InfluenceScorer(LinearRegression(), curvature="cg").fit(_wide, _wide_y)
)
row("scorer-wide-ridge-is-exact", Result(_loo_matches))(
    lambda: (
        Ridge(alpha=1.0),
        _wide,
        _wide_y,
        3,
        InfluenceScorer(Ridge(alpha=1.0))
        .fit(_wide, _wide_y)
        .parameter_change([3], method="newton"),
    )
)
row("scorer-collinear-features", Warn(UserWarning, "not positive definite.*damping"))(
    lambda: InfluenceScorer(LinearRegression(), curvature="exact").fit(
        np.c_[Xr0, Xr0[:, :1]], yr0
    )
)
row(
    "scorer-collinear-damped",
    Result(lambda S: np.all(np.isfinite(S))),
)(
    lambda: _no_warning_of(UserWarning)(
        lambda: (
            InfluenceScorer(LinearRegression(), damping=1e-3)
            .fit(np.c_[Xr0, Xr0[:, :1]], yr0)
            .influence(np.c_[Xr0, Xr0[:, :1]][:3], yr0[:3])
        )
    )
)


@cache
def cancer():
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X)[:, :8], y


# sklearn's default tol: ||grad J|| is 1e-4 of the per-sample gradients, but
# H is ill-conditioned, so the fit is a Newton step of about 2 typical
# leave-one-out shifts from the optimum (its scores measured 4% off the optimum's)
row("scorer-unpenalised-default-tol", Warn(NotAtOptimumWarning, "Newton step.*tol"))(
    lambda: InfluenceScorer(LogisticRegression(C=np.inf)).fit(*cancer())
)
row("scorer-max-iter-1", Warn(NotAtOptimumWarning, "optimum"))(
    lambda: InfluenceScorer(LogisticRegression(max_iter=1)).fit(X0, y0)
)
row(
    "scorer-unpenalised-tight-tol-quiet",
    Result(lambda s: np.all(np.isfinite(s.self_influence_)) or pytest.fail()),
)(
    lambda: _no_warning_of(NotAtOptimumWarning)(
        lambda: InfluenceScorer(
            LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000)
        ).fit(*cancer())
    )
)
row(
    "scorer-frozen-weights-mismatch",
    Warn(NotAtOptimumWarning, "sample_weight"),
)(
    lambda: InfluenceScorer(
        FrozenEstimator(
            _lr().fit(X0, y0, sample_weight=np.r_[np.full(20, 5.0), np.ones(20)])
        )
    ).fit(X0, y0)
)

# --------------------------------------------------------------------------
# InfluenceScorer: persistence and sign conventions (correct results)
# --------------------------------------------------------------------------
row(
    "scorer-pickle-roundtrip",
    Result(lambda p: assert_allclose(p[0], p[1])),
)(
    lambda: (
        pickle.loads(pickle.dumps(scorer())).influence(X0, y0),
        scorer().influence(X0, y0),
    )
)
row(
    "scorer-clone-unfitted",
    Result(lambda c: (not hasattr(c, "n_train_")) or pytest.fail("clone is fitted")),
)(lambda: clone(scorer()))
row(
    "scorer-refit-deterministic",
    Result(lambda p: assert_allclose(p[0], p[1])),
)(
    lambda: (
        InfluenceScorer(_lr()).fit(X0, y0).influence(X0, y0),
        InfluenceScorer(_lr()).fit(X0, y0).influence(X0, y0),
    )
)
row("scorer-upweighting-sign", Result(lambda p: assert_allclose(p[0], -p[1])))(
    lambda: (scorer().upweighting(X0, y0), scorer().influence(X0, y0))
)
row(
    "scorer-self-influence-nonnegative",
    Result(lambda s: np.all(s >= -1e-12) or pytest.fail(f"{s.min()}")),
)(lambda: scorer().self_influence_)
row(
    "scorer-self-influence-is-diagonal",
    Result(lambda p: assert_allclose(p[0], np.diag(p[1]), rtol=1e-8)),
)(lambda: (scorer().self_influence_, scorer().influence(X0, y0)))
row("scorer-ols-newton-is-loo", Result(_loo_matches))(
    lambda: (
        LinearRegression(),
        Xr0,
        yr0,
        5,
        reg_scorer().parameter_change([5], method="newton"),
    )
)
row(
    "scorer-logistic-first-order-near-loo",
    Result(
        lambda p: assert_allclose(p[0], p[1], rtol=0.2, atol=0.02 * np.abs(p[1]).max())
    ),
)(
    lambda: (
        scorer().parameter_change([0])[0],
        _refit_change(_lr(), X0, y0, 0),
    )
)
row(
    "scorer-transform-shape",
    Result(lambda T: T.shape == (5, 40) or pytest.fail(str(T.shape))),
)(lambda: scorer().transform(X0[:5]))


# --------------------------------------------------------------------------
# curvature backends: every name on the logistic model, then faults
# --------------------------------------------------------------------------
# exact solves (the GGN of a GLM with its canonical link is its Hessian)
_EXACT_LIKE = {"exact": 1e-8, "cg": 1e-4, "ggn": 1e-8, "blockggn": 1e-8}


def _backend_row(name):
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            s = InfluenceScorer(_lr(), curvature=name, random_state=0).fit(X0, y0)
        return s.influence(X0, y0), s.self_influence_

    def check(res):
        S, si = res
        _finite_square(S)
        if name in _EXACT_LIKE:
            _close_to_exact(S, rtol=_EXACT_LIKE[name])
        if name == "identity":
            # closed form: H = I, so S = G G^T
            G = scorer().adapter_.train_grads(np.arange(40))
            assert_allclose(S, G @ G.T, rtol=1e-8, atol=1e-12)
        if name in ("exact", "cg", "ggn", "blockggn", "ef", "diagonal", "identity"):
            # these curvatures are positive definite here: g^T M^-1 g >= 0
            assert np.all(si >= -1e-10), si.min()

    return run, Result(check)


for _name in sorted(CURVATURES):
    _fn, _expect = _backend_row(_name)
    row(f"backend-{_name}-logistic", _expect)(_fn)


def _nan_params_row(name):
    def run():
        s = InfluenceScorer(_lr(), curvature=name, random_state=0)
        est = _lr().fit(X0, y0)
        est.coef_ = est.coef_.copy()
        est.coef_[0, 0] = np.nan
        return s.set_params(estimator=FrozenEstimator(est)).fit(X0, y0)

    return run


for _name in ("exact", "cg", "lissa", "diagonal", "lowrank"):
    row(f"backend-{_name}-nan-parameters", Error(ValueError, "non-finite.*Refit"))(
        _nan_params_row(_name)
    )

row("backend-cg-maxiter-zero", Error(ValueError, "maxiter"))(
    lambda: (
        InfluenceScorer(_lr(), curvature="cg")
        .set_params(curvature=CURVATURES["cg"](maxiter=0))
        .fit(X0, y0)
    )
)
row("backend-lowrank-rank-zero", Error(ValueError, "rank"))(
    lambda: InfluenceScorer(_lr(), curvature=CURVATURES["lowrank"](rank=0)).fit(X0, y0)
)
row("backend-lissa-depth-zero", Error(ValueError, "depth"))(
    lambda: InfluenceScorer(_lr(), curvature=CURVATURES["lissa"](depth=0)).fit(X0, y0)
)
row(
    "backend-lissa-not-stationarity-checked-reproducible",
    Result(lambda p: assert_allclose(p[0], p[1])),
)(
    lambda: tuple(
        InfluenceScorer(_lr(), curvature="lissa", random_state=0)
        .fit(X0, y0)
        .influence(X0[:3], y0[:3])
        for _ in range(2)
    )
)
row(
    "backend-set-params-nested",
    Result(lambda s: s.curvature_.maxiter == 7 or pytest.fail()),
)(
    lambda: (
        InfluenceScorer(_lr(), curvature=CURVATURES["cg"]())
        .set_params(curvature__maxiter=7)
        .fit(X0, y0)
    )
)
row("backend-exact-wide-interpolation", Warn(UserWarning, "interpolates"))(
    lambda: InfluenceScorer(LinearRegression(), curvature="exact").fit(
        _wide[:, :12], _wide_y
    )
)
for _name in ("kfac", "ekfac"):
    row(
        f"backend-{_name}-linear-regression",
        Result(lambda S: np.all(np.isfinite(S)) or pytest.fail("non-finite")),
    )(
        (
            lambda n: (
                lambda: (
                    InfluenceScorer(LinearRegression(), curvature=n)
                    .fit(Xr0, yr0)
                    .influence(Xr0[:3], yr0[:3])
                )
            )
        )(_name)
    )


# --------------------------------------------------------------------------
# NoisyLabelDetector
# --------------------------------------------------------------------------
Xv0, yv0 = val_data()
Xf, yf, flips = flipped()


def _auc(scores, positives):
    from sklearn.metrics import roc_auc_score

    truth = np.zeros(len(scores), bool)
    truth[positives] = True
    return roc_auc_score(truth, scores)


row("detector-validation-influence-without-val", Error(ValueError, "X_val and y_val"))(
    lambda: NoisyLabelDetector(_lr(), method="validation_influence").fit(X0, y0)
)
row("detector-vm-without-val", Error(ValueError, "validation set.*X_val"))(
    lambda: NoisyLabelDetector(_lr(), method="vm").fit(X0, y0)
)
row("detector-fvm-without-val", Error(ValueError, "validation set.*X_val"))(
    lambda: NoisyLabelDetector(_lr(), method="fvm").fit(X0, y0)
)
row("detector-X-val-without-y-val", Error(ValueError, "both X_val and y_val"))(
    lambda: NoisyLabelDetector(_lr(), method="validation_influence").fit(
        X0, y0, X_val=Xv0
    )
)
row("detector-val-wrong-width", Error(ValueError, "features"))(
    lambda: NoisyLabelDetector(_lr(), method="validation_influence").fit(
        X0, y0, X_val=Xv0[:, :2], y_val=yv0
    )
)
row("detector-val-length-mismatch", Error(ValueError, "inconsistent"))(
    lambda: NoisyLabelDetector(_lr(), method="validation_influence").fit(
        X0, y0, X_val=Xv0, y_val=yv0[:3]
    )
)
row("detector-contamination-too-large", Error(ValueError, "contamination"))(
    lambda: NoisyLabelDetector(_lr(), contamination=0.7).fit(X0, y0)
)
row("detector-method-unknown", Error(ValueError, "method"))(
    lambda: NoisyLabelDetector(_lr(), method="entropy").fit(X0, y0)
)
row(
    "detector-vm-diverging-finetune", Error(ValueError, "diverged.*lower the finetuner")
)(
    lambda: NoisyLabelDetector(
        _lr(), method="vm", finetune=Finetuner(lr=1e6, random_state=0)
    ).fit(X0, y0, X_val=Xv0, y_val=yv0)
)
row(
    "detector-fvm-diverging-finetune",
    Error(ValueError, "diverged.*lower the finetuner"),
)(
    lambda: NoisyLabelDetector(
        _lr(), method="fvm", finetune=Finetuner(lr=1e6, random_state=0)
    ).fit(X0, y0, X_val=Xv0, y_val=yv0)
)
row("detector-tracin-on-sklearn", Error(TypeError, "tracin|TracIn"))(
    lambda: NoisyLabelDetector(_lr(), method="tracin").fit(X0, y0)
)
row("detector-nan-X", Error(ValueError, "NaN"))(
    lambda: NoisyLabelDetector(_lr()).fit(_with(X0, 2, 2, np.nan), y0)
)
row("detector-single-class", Error(ValueError, "class"))(
    lambda: NoisyLabelDetector(_lr()).fit(X0, np.ones(40, int))
)
row(
    "detector-contamination-count",
    Result(lambda d: d.noisy_mask_.sum() == 4 or pytest.fail(str(d.noisy_mask_.sum()))),
)(lambda: NoisyLabelDetector(_lr(), contamination=0.1).fit(X0, y0))
row(
    "detector-fit-predict-matches-mask",
    Result(lambda p: np.array_equal(p[0] == -1, p[1].noisy_mask_) or pytest.fail()),
)(
    lambda: (
        (d := NoisyLabelDetector(_lr(), contamination=0.1)).fit_predict(X0, y0),
        d,
    )
)
row(
    "detector-finds-known-flips",
    Result(
        lambda d: _auc(d.scores_, flips) > 0.95 or pytest.fail(_auc(d.scores_, flips))
    ),
)(lambda: NoisyLabelDetector(_lr()).fit(Xf, yf))
row(
    "detector-resample-drops-flagged",
    Result(lambda p: len(p[0]) == 80 - p[1].noisy_mask_.sum() or pytest.fail()),
)(
    lambda: (
        (d := NoisyLabelDetector(_lr(), contamination=0.1)).fit_resample(Xf, yf)[0],
        d,
    )
)
row("detector-unfitted", Error(NotFittedError, "not fitted"))(
    lambda: check_is_fitted(NoisyLabelDetector(_lr()))
)


# --------------------------------------------------------------------------
# Relabeler
# --------------------------------------------------------------------------
row(
    "relabeler-default-without-val",
    Error(ValueError, "method='auto'.*X_val and y_val.*method='label_influence'"),
)(lambda: Relabeler(_lr()).fit(X0, y0))
row(
    "relabeler-default-is-fvm-with-val",
    Result(lambda r: r.method_ == "fvm" or pytest.fail(r.method_)),
)(lambda: Relabeler(_lr(), random_state=0).fit(X0, y0, X_val=Xv0, y_val=yv0))
row(
    "relabeler-label-influence-without-val",
    Warn(UserWarning, "no validation set.*X_val"),
)(lambda: Relabeler(_lr(), method="label_influence").fit(X0, y0))
row("relabeler-regressor-without-val", Error(ValueError, "classifier"))(
    lambda: Relabeler(Ridge()).fit(Xr0, yr0)
)
row("relabeler-regressor", Error(ValueError, "classifier"))(
    lambda: Relabeler(Ridge(), method="label_influence").fit(Xr0, yr0)
)
row("relabeler-max-fraction-too-large", Error(ValueError, "max_fraction"))(
    lambda: Relabeler(_lr(), max_fraction=1.5).fit(X0, y0, X_val=Xv0, y_val=yv0)
)
row("relabeler-method-unknown", Error(ValueError, "method"))(
    lambda: Relabeler(_lr(), method="self_influence").fit(X0, y0)
)
row("relabeler-vm-without-val", Error(ValueError, "validation set.*X_val"))(
    lambda: Relabeler(_lr(), method="vm").fit(X0, y0)
)
row(
    "relabeler-vm-diverging-finetune",
    Error(ValueError, "diverged.*lower the finetuner"),
)(
    lambda: Relabeler(
        _lr(), method="vm", finetune=Finetuner(lr=1e6, random_state=0)
    ).fit(X0, y0, X_val=Xv0, y_val=yv0)
)
row("relabeler-y-val-unseen-class", Error(ValueError, "label|class"))(
    lambda: Relabeler(_lr()).fit(X0, y0, X_val=Xv0, y_val=np.full(30, 5))
)
row(
    "relabeler-fixes-known-flips",
    Result(
        lambda r: (
            (
                set(np.flatnonzero(r.relabeled_mask_)) <= set(flips)
                and r.relabeled_mask_.sum() >= 3
            )
            or pytest.fail(str(np.flatnonzero(r.relabeled_mask_)))
        )
    ),
)(
    lambda: Relabeler(_lr(), method="label_influence", max_fraction=0.1).fit(
        Xf,
        yf,
        X_val=Xf[np.setdiff1d(np.arange(80), flips)][:40],
        y_val=(Xf[:, 0] + Xf[:, 1] > 0).astype(int)[np.setdiff1d(np.arange(80), flips)][
            :40
        ],
    )
)
row(
    "relabeler-default-fixes-every-known-flip",
    Result(
        lambda r: (
            set(flips) <= set(np.flatnonzero(r.relabeled_mask_))
            or pytest.fail(str(np.flatnonzero(r.relabeled_mask_)))
        )
    ),
)(
    lambda: Relabeler(_lr(), max_fraction=0.1, random_state=0).fit(
        Xf,
        yf,
        X_val=Xf[np.setdiff1d(np.arange(80), flips)][:40],
        y_val=(Xf[:, 0] + Xf[:, 1] > 0).astype(int)[np.setdiff1d(np.arange(80), flips)][
            :40
        ],
    )
)
row(
    "relabeler-only-masked-rows-change",
    Result(
        lambda r: (
            np.array_equal(r.y_relabeled_ != y0, r.relabeled_mask_) or pytest.fail()
        )
    ),
)(lambda: Relabeler(_lr(), max_fraction=0.2).fit(X0, y0, X_val=Xv0, y_val=yv0))
row(
    "relabeler-cap-respected",
    Result(lambda r: r.relabeled_mask_.sum() <= 4 or pytest.fail()),
)(lambda: Relabeler(_lr(), max_fraction=0.1).fit(X0, y0, X_val=Xv0, y_val=yv0))


# --------------------------------------------------------------------------
# CleanedClassifier / CleanedRegressor
# --------------------------------------------------------------------------
row("cleaned-cleaner-without-fit-resample", Error(ValueError, "cleaner"))(
    lambda: CleanedClassifier(_lr(), cleaner=_lr()).fit(X0, y0)
)
row("cleaned-estimator-without-fit", Error(ValueError, "estimator"))(
    lambda: CleanedClassifier("lr").fit(X0, y0)
)
row("cleaned-not-fitted", Error(NotFittedError, "not fitted"))(
    lambda: CleanedClassifier(_lr()).predict(X0)
)
row("cleaned-nan-X", Error(ValueError, "NaN"))(
    lambda: CleanedClassifier(_lr()).fit(_with(X0, 0, 1, np.nan), y0)
)
row("cleaned-vm-without-val", Error(ValueError, "validation set.*X_val"))(
    lambda: CleanedClassifier(_lr(), NoisyLabelDetector(_lr(), method="vm")).fit(X0, y0)
)
row(
    "cleaned-classifier-drops-flagged-rows",
    Result(lambda p: assert_allclose(p[0].estimator_.coef_, p[1].coef_, rtol=1e-6)),
)(
    lambda: (
        CleanedClassifier(_lr(), NoisyLabelDetector(_lr(), contamination=0.1)).fit(
            Xf, yf
        ),
        _lr().fit(*NoisyLabelDetector(_lr(), contamination=0.1).fit_resample(Xf, yf)),
    )
)
row(
    "cleaned-regressor-drops-flagged-rows",
    Result(lambda p: assert_allclose(p[0].estimator_.coef_, p[1].coef_, rtol=1e-8)),
)(
    lambda: (
        CleanedRegressor(
            LinearRegression(), NoisyLabelDetector(LinearRegression(), method="loss")
        ).fit(Xr0, yr0),
        LinearRegression().fit(
            *NoisyLabelDetector(LinearRegression(), method="loss").fit_resample(
                Xr0, yr0
            )
        ),
    )
)
row("cleaned-regressor-relabeler", Error(ValueError, "classifier"))(
    lambda: CleanedRegressor(Ridge(), Relabeler(Ridge())).fit(Xr0, yr0)
)


def _routed():
    from sklearn import config_context

    with config_context(enable_metadata_routing=True):
        det = NoisyLabelDetector(_lr(), method="validation_influence")
        det.set_fit_request(X_val=True, y_val=True)
        cc = CleanedClassifier(_lr(), det).fit(X0, y0, X_val=Xv0, y_val=yv0)
        alone = NoisyLabelDetector(_lr(), method="validation_influence")
        alone.fit(X0, y0, X_val=Xv0, y_val=yv0)
    return cc, alone


row(
    "cleaned-routes-validation-set",
    Result(lambda p: assert_allclose(p[0].cleaner_.scores_, p[1].scores_)),
)(_routed)
row(
    "cleaned-validation-set-without-routing",
    Error(ValueError, "enable_metadata_routing"),
)(
    lambda: CleanedClassifier(
        _lr(), NoisyLabelDetector(_lr(), method="validation_influence")
    ).fit(X0, y0, X_val=Xv0, y_val=yv0)
)


# --------------------------------------------------------------------------
# TorchClassifier / TorchRegressor
# --------------------------------------------------------------------------
def _torch():
    return pytest.importorskip("torch")


def _tc(**kw):
    from skinfluence import TorchClassifier

    torch = _torch()
    return TorchClassifier(torch.nn.Linear(3, 2), random_state=0, **kw)


def _tr(**kw):
    from skinfluence import TorchRegressor

    torch = _torch()
    return TorchRegressor(torch.nn.Linear(3, 1), random_state=0, **kw)


row("torch-classifier-wrong-input-width", Error(ValueError, "input features"))(
    lambda: _tc().set_params(module=_torch().nn.Linear(4, 2)).fit(X0, y0)
)
row("torch-classifier-wrong-output-width", Error(ValueError, "one logit per class"))(
    lambda: _tc().set_params(module=_torch().nn.Linear(3, 5)).fit(X0, y0)
)
row("torch-regressor-broadcast", Error(ValueError, "broadcast"))(
    lambda: _tr().set_params(module=_torch().nn.Linear(3, 2)).fit(Xr0, yr0)
)
row("torch-classifier-nan-X", Error(ValueError, "NaN"))(
    lambda: _tc().fit(_with(X0, 0, 0, np.nan), y0)
)
row("torch-regressor-inf-y", Error(ValueError, "infinity|inf"))(
    lambda: _tr().fit(Xr0, np.r_[np.inf, yr0[1:]])
)
row("torch-classifier-not-fitted", Error(NotFittedError, "not fitted"))(
    lambda: _tc().predict(X0)
)
row("torch-classifier-single-class", Error(ValueError, "class"))(
    lambda: _tc().fit(X0, np.zeros(40, int))
)
row("torch-classifier-module-not-module", Error(TypeError, "torch.nn.Module"))(
    lambda: _tc().set_params(module=lambda d, k: "nope").fit(X0, y0)
)
row(
    "torch-classifier-exact-equals-cg",
    Result(lambda p: assert_allclose(p[0], p[1], rtol=1e-3, atol=1e-5)),
)(
    lambda: (
        InfluenceScorer(_tc(weight_decay=0.1, tol=1e-12), curvature="exact")
        .fit(X0, y0)
        .self_influence_,
        InfluenceScorer(_tc(weight_decay=0.1, tol=1e-12), curvature="cg")
        .fit(X0, y0)
        .self_influence_,
    )
)
for _name in ("ggn", "kfac", "ekfac", "diagonal"):
    row(
        f"torch-classifier-backend-{_name}",
        Result(lambda S: np.all(np.isfinite(S)) or pytest.fail("non-finite")),
    )(
        (
            lambda n: (
                lambda: (
                    InfluenceScorer(_tc(weight_decay=0.1), curvature=n)
                    .fit(X0, y0)
                    .influence(X0[:4], y0[:4])
                )
            )
        )(_name)
    )
row(
    "torch-regressor-pickle-roundtrip",
    Result(lambda p: assert_allclose(p[0], p[1])),
)(
    lambda: (
        lambda s: (
            pickle.loads(pickle.dumps(s)).influence(Xr0[:3], yr0[:3]),
            s.influence(Xr0[:3], yr0[:3]),
        )
    )(InfluenceScorer(_tr(weight_decay=0.01)).fit(Xr0, yr0))
)
row("torch-regressor-indices-2d", Error(ValueError, "1-D"))(
    lambda: (
        InfluenceScorer(_tr(weight_decay=0.01))
        .fit(Xr0, yr0)
        .parameter_change(np.zeros((1, 2), int))
    )
)


# --------------------------------------------------------------------------
# memory and concurrency
# --------------------------------------------------------------------------


@contextmanager
def _dense_budget(nbytes):
    from skinfluence import _constants

    old = _constants.DENSE_MEMORY_BUDGET_BYTES
    _constants.DENSE_MEMORY_BUDGET_BYTES = nbytes
    try:
        yield
    finally:
        _constants.DENSE_MEMORY_BUDGET_BYTES = old


def _over_budget(curvature, model=None):
    def run():
        with _dense_budget(64):  # fewer bytes than any dense p x p here
            InfluenceScorer(model or _lr(), curvature=curvature).fit(X0, y0)

    return run


for _name in ("exact", "ggn"):
    row(f"memory-dense-{_name}-over-budget", Error(ValueError, "dense memory budget"))(
        _over_budget(_name)
    )
row("memory-torch-ggn-over-budget", Error(ValueError, "CGCurvature.operator='ggn'"))(
    lambda: _over_budget("ggn", _tc())()
)


def _matrix_free_within_budget():
    with _dense_budget(64):
        cg = InfluenceScorer(_lr(), curvature="cg").fit(X0, y0).influence(X0, y0)
    return cg, scorer().influence(X0, y0)


row(
    "memory-cg-fits-where-dense-is-refused",
    Result(lambda p: assert_allclose(p[0], p[1], rtol=1e-4, atol=1e-6)),
)(_matrix_free_within_budget)
row(
    "memory-batch-size-1-equals-default",
    Result(lambda p: assert_allclose(p[0], p[1], rtol=1e-10, atol=1e-12)),
)(
    lambda: (
        InfluenceScorer(_lr(), batch_size=1).fit(X0, y0).influence(X0, y0),
        scorer().influence(X0, y0),
    )
)


def _threads_vs_sequential(make):
    def run():
        fitted = make()
        sequential = [fitted.influence(X0[i : i + 3], y0[i : i + 3]) for i in range(8)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [
                pool.submit(fitted.influence, X0[i : i + 3], y0[i : i + 3])
                for i in range(8)
            ]
            concurrent = [f.result() for f in futures]
        return sequential, concurrent

    return run


def _same_lists(p):
    for a, b in zip(*p, strict=True):
        assert_allclose(a, b, rtol=0, atol=0)


row("concurrency-threads-linear-exact", Result(_same_lists))(
    _threads_vs_sequential(scorer)
)
row("concurrency-threads-linear-cg", Result(_same_lists))(
    _threads_vs_sequential(lambda: InfluenceScorer(_lr(), curvature="cg").fit(X0, y0))
)
row("concurrency-threads-torch-ggn", Result(_same_lists))(
    _threads_vs_sequential(
        lambda: InfluenceScorer(_tc(weight_decay=1e-2), curvature="ggn").fit(X0, y0)
    )
)


# --------------------------------------------------------------------------
# the test
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fn, expect", [pytest.param(f, e, id=i) for i, f, e in ROWS])
def test_fault(fn, expect):
    if isinstance(expect, Error):
        with pytest.raises(expect.type, match=expect.match), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
    elif isinstance(expect, Warn):
        with pytest.warns(expect.category, match=expect.match):
            fn()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = fn()
        verdict = expect.check(out)
        # a check may return a boolean: False (numpy's included) fails the row
        assert verdict is None or bool(verdict), verdict


def test_table_size():
    """At least 80 rows, every estimator and every backend present."""
    ids = [i for i, _, _ in ROWS]
    assert len(ids) == len(set(ids)) and len(ids) >= 80, len(ids)
    for prefix in ("scorer-", "detector-", "relabeler-", "cleaned-", "torch-"):
        assert any(i.startswith(prefix) for i in ids), prefix
    for name in CURVATURES:
        assert f"backend-{name}-logistic" in ids, name
