"""Linear adapter against ground truth: finite differences of scikit-learn's own
predictions, and stationarity at scikit-learn's own optimum."""

import copy

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    LogisticRegressionCV,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from skinfluence.models import LinearAdapter, make_adapter


def _data(name, breast_cancer, wine, diabetes):
    Xtr, _, ytr, _ = {"bc": breast_cancer, "wine": wine, "diab": diabetes}[name]
    return Xtr[:120], ytr[:120]


# (case id, dataset, estimator); tight tolerances so sklearn's fit is an optimum
CASES = [
    ("binary", "bc", LogisticRegression(C=0.5, tol=1e-12, max_iter=10_000)),
    ("binary-noint", "bc", LogisticRegression(C=0.5, fit_intercept=False, tol=1e-12)),
    (
        "binary-liblinear",
        "bc",
        LogisticRegression(solver="liblinear", C=0.5, intercept_scaling=2.0, tol=1e-12),
    ),
    (
        "binary-classweight",
        "bc",
        LogisticRegression(C=0.5, class_weight={0: 2.0, 1: 0.5}, tol=1e-12),
    ),
    ("multinomial", "wine", LogisticRegression(C=0.5, tol=1e-12, max_iter=10_000)),
    (
        "multinomial-noint",
        "wine",
        LogisticRegression(C=0.5, fit_intercept=False, tol=1e-12, max_iter=10_000),
    ),
    (
        "multinomial-newton",
        "wine",
        LogisticRegression(C=0.5, solver="newton-cholesky", tol=1e-12),
    ),
    ("ridge", "diab", Ridge(alpha=3.0)),
    ("ridge-noint", "diab", Ridge(alpha=3.0, fit_intercept=False)),
    ("linreg", "diab", LinearRegression()),
]


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def case(request, breast_cancer, wine, diabetes):
    _, data, est = request.param
    X, y = _data(data, breast_cancer, wine, diabetes)
    est = copy.deepcopy(est).fit(X, y)
    return est, X, y, make_adapter(est, X, y)


def _with_params(est, adapter, theta):
    """A copy of ``est`` whose coefficients are ``theta`` (adapter layout)."""
    est = copy.deepcopy(est)
    coef, intercept = adapter.unravel(theta)
    est.coef_ = coef.reshape(np.shape(est.coef_))
    if intercept is not None:
        est.intercept_ = intercept.reshape(np.shape(est.intercept_))
    return est


def _sklearn_losses(est, X, y):
    """Per-sample loss from scikit-learn's own predictions (independent)."""
    if hasattr(est, "predict_proba"):
        proba = est.predict_proba(X)
        return -np.log(proba[np.arange(len(y)), np.searchsorted(est.classes_, y)])
    return 0.5 * (est.predict(X) - y) ** 2


def _sklearn_objective(est, X, y):
    """J as scikit-learn defines it, divided to the mean-loss scale."""
    n = len(y)
    if isinstance(est, LogisticRegression):
        w = np.ones(n)
        if est.class_weight is not None:
            w = np.array([est.class_weight[c] for c in y])
        pen = np.sum(est.coef_**2)
        if est.solver == "liblinear" and est.fit_intercept:
            pen += np.sum((est.intercept_ / est.intercept_scaling) ** 2)
        return (est.C * np.sum(w * _sklearn_losses(est, X, y)) + 0.5 * pen) / (
            est.C * n
        )
    alpha = getattr(est, "alpha", 0.0)
    return (np.sum((est.predict(X) - y) ** 2) + alpha * np.sum(est.coef_**2)) / (2 * n)


def test_stationary_at_sklearn_optimum(case):
    # The objective is read as sklearn minimises it (C, alpha, intercept,
    # liblinear's penalised intercept, class weights): gradient ~ 0 there.
    est, X, y, adapter = case
    g = adapter.objective_grad()
    scale = np.sqrt(np.mean(np.sum(adapter.train_grads() ** 2, axis=1)))
    assert np.linalg.norm(g) < 1e-5 * scale


def test_loss_matches_sklearn(case):
    est, X, y, adapter = case
    assert_allclose(
        adapter.loss(X, y), _sklearn_losses(est, X, y), rtol=1e-10, atol=1e-12
    )


def test_per_sample_grads_finite_differences(case):
    est, X, y, adapter = case
    theta, h = adapter.params(), 1e-6
    rows = slice(0, 7)
    fd = np.empty((7, adapter.n_params))
    for a in range(adapter.n_params):
        e = np.zeros_like(theta)
        e[a] = h
        up = _sklearn_losses(_with_params(est, adapter, theta + e), X[rows], y[rows])
        dn = _sklearn_losses(_with_params(est, adapter, theta - e), X[rows], y[rows])
        fd[:, a] = (up - dn) / (2 * h)
    assert_allclose(adapter.loss_grads(X[rows], y[rows]), fd, rtol=1e-5, atol=1e-7)
    weights = adapter.weights[rows][:, None]
    assert_allclose(adapter.train_grads(rows), weights * fd, rtol=1e-5, atol=1e-7)


def test_hessian_finite_differences(case):
    # Second differences of sklearn's objective, independent of the adapter.
    est, X, y, adapter = case
    theta, h, p = adapter.params(), 1e-3, adapter.n_params

    def J(t):
        return _sklearn_objective(_with_params(est, adapter, t), X, y)

    H = np.empty((p, p))
    E = np.eye(p) * h
    for a in range(p):
        for b in range(a, p):
            H[a, b] = H[b, a] = (
                J(theta + E[a] + E[b])
                - J(theta + E[a] - E[b])
                - J(theta - E[a] + E[b])
                + J(theta - E[a] - E[b])
            ) / (4 * h * h)
    N = adapter.null_basis
    got = adapter.hessian_matrix() - N @ N.T
    assert_allclose(got, H, rtol=1e-4, atol=1e-6 * np.abs(H).max())


def test_hessian_operator_matches_matrix(case):
    _, _, _, adapter = case
    V = np.random.default_rng(0).standard_normal((adapter.n_params, 4))
    assert_allclose(adapter.hessian_operator() @ V, adapter.hessian_matrix() @ V)


def test_multinomial_null_direction(wine):
    # Shifting every intercept by the same amount leaves every probability,
    # hence every gradient, orthogonal to that direction; H is PD with the
    # projector and the direction is exactly the flat one.
    X, _, y, _ = wine
    est = LogisticRegression(C=1.0).fit(X, y)
    adapter = make_adapter(est, X, y)
    N = adapter.null_basis
    assert N.shape == (adapter.n_params, 1)
    assert_allclose(adapter.train_grads() @ N, 0, atol=1e-12)
    shifted = _with_params(est, adapter, adapter.params() + 3.0 * N[:, 0])
    assert_allclose(shifted.predict_proba(X), est.predict_proba(X), atol=1e-12)
    assert np.linalg.eigvalsh(adapter.hessian_matrix()).min() > 0


def test_unpenalised_multinomial_has_full_null_space(wine):
    X, _, y, _ = wine
    est = LogisticRegression(C=np.inf, max_iter=50).fit(X[:60], y[:60])
    adapter = make_adapter(est, X[:60], y[:60])
    assert adapter.null_basis.shape[1] == X.shape[1] + 1


def test_pipeline_preprocessing_is_fixed(wine):
    X, _, y, _ = wine
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X * 10 + 3, y)
    adapter = make_adapter(pipe, X * 10 + 3, y)
    direct = make_adapter(pipe[-1], pipe[0].transform(X * 10 + 3), y)
    assert_allclose(adapter.train_grads(), direct.train_grads())
    assert_allclose(
        adapter.loss(X[:5] * 10 + 3, y[:5]),
        direct.loss(pipe[0].transform(X[:5] * 10 + 3), y[:5]),
    )


@pytest.mark.parametrize(
    "est, match",
    [
        (LogisticRegression(l1_ratio=1.0, solver="saga"), "twice-differentiable"),
        (LinearRegression(positive=True), "positive=True"),
        (
            LogisticRegressionCV(
                Cs=2,
                cv=2,
                l1_ratios=(0.5,),
                solver="saga",
                scoring="neg_log_loss",
                use_legacy_attributes=False,
            ),
            "l1_ratio_=0.5",
        ),
        pytest.param(
            LogisticRegression(penalty="l1", solver="liblinear"),
            r"penalty='l1' adds an L1 term. Leave penalty at its default",
            marks=pytest.mark.filterwarnings("ignore:'penalty' was deprecated"),
        ),
        (SGDClassifier(loss="hinge"), "loss='hinge'"),
        (SGDClassifier(loss="log_loss", penalty="l1"), "penalty='l1'"),
        (SGDRegressor(loss="huber"), "loss='huber'"),
        (RidgeClassifier(positive=True, solver="lbfgs"), "positive=True"),
    ],
)
def test_unsupported_objectives_raise(est, match, breast_cancer):
    X, _, y, _ = breast_cancer
    est.fit(X[:80], y[:80])
    with pytest.raises(ValueError, match=match):
        make_adapter(est, X[:80], y[:80])


@pytest.mark.parametrize("est", [KNeighborsClassifier(), LinearSVC()])
def test_unsupported_estimator_names_supported(est, breast_cancer):
    X, _, y, _ = breast_cancer
    with pytest.raises(
        TypeError, match="Supported: LinearRegression, Ridge, LogisticRegression"
    ):
        make_adapter(est.fit(X, y), X, y)


def test_unseen_query_label_raises(wine):
    X, _, y, _ = wine
    adapter = LinearAdapter(LogisticRegression().fit(X, y), X, y)
    with pytest.raises(ValueError, match="not seen during fit"):
        adapter.loss_grads(X[:2], np.array([0, 7]))


def test_balanced_class_weight_with_sample_weight_is_at_the_optimum():
    # scikit-learn's LogisticRegression counts "balanced" classes by sample
    # weight: the adapter's objective must be the one the model minimised
    import warnings as _warnings

    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from skinfluence import InfluenceScorer

    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)[:, :8]
    w = np.random.default_rng(0).uniform(0.2, 3, len(y))
    est = LogisticRegression(class_weight="balanced", tol=1e-12, max_iter=5000)
    with _warnings.catch_warnings():
        _warnings.simplefilter("error")
        scorer = InfluenceScorer(est).fit(X, y, sample_weight=w)
    assert scorer.grad_norm_ < 1e-6


def test_cv_models_pickle():
    import pickle

    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegressionCV, RidgeClassifierCV, RidgeCV

    from skinfluence import InfluenceScorer
    from skinfluence.evaluation import loo_change

    X, y = load_breast_cancer(return_X_y=True)
    X = X[:200, :5] / X[:200, :5].std(axis=0)
    y = y[:200]
    lrcv = LogisticRegressionCV(
        Cs=2,
        cv=2,
        l1_ratios=(0.0,),
        scoring="neg_log_loss",
        use_legacy_attributes=False,
    )
    for est in (lrcv, RidgeClassifierCV(), RidgeCV()):
        scorer = InfluenceScorer(est).fit(X, y)
        again = pickle.loads(pickle.dumps(scorer))
        a = loo_change(scorer, X[:2], y[:2], indices=[0, 5])
        b = loo_change(again, X[:2], y[:2], indices=[0, 5])
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
