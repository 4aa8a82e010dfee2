"""Every closed-form scikit-learn family against ground truth.

Ground truths: actual leave-one-out refits (``loo_change``, which refits the
scikit-learn model itself, or minimises the objective for stochastic
solvers), scikit-learn's own deviance, the optimum of an equivalent
objective, and finite differences.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import (
    GammaRegressor,
    HuberRegressor,
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
from sklearn.metrics import mean_tweedie_deviance
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceScorer
from skinfluence.evaluation import loo_change
from skinfluence.exceptions import NotAtOptimumWarning
from skinfluence.models import make_adapter

N_LOO = 25


def _glm_data(kind, n=150, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    eta = 0.3 + X @ np.array([0.4, -0.3, 0.2, 0.1])[:d]
    mu = np.exp(eta)
    if kind == "poisson":
        y = rng.poisson(mu).astype(float)
    elif kind == "gamma":
        y = rng.gamma(2.0, mu / 2.0)
    elif kind == "tweedie":  # compound Poisson-gamma: exact zeros and positives
        counts = rng.poisson(mu * 0.8)
        y = np.array([rng.gamma(2.0, 0.6, size=c).sum() for c in counts])
    else:  # normal
        y = eta + rng.normal(scale=0.5, size=n)
    return X, y


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X)[:160], y[:160]


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), np.array(["a", "b", "c"])[y]


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X)[:150], y[:150]


def _loo_agreement(scorer, Xq, yq, target="loss"):
    """Predicted vs actual change of the query losses for N_LOO removals."""
    predicted = scorer.influence(Xq, yq, target=target)[:, :N_LOO]
    predicted = predicted / scorer.n_train_
    actual = loo_change(scorer, Xq, yq, indices=range(N_LOO), target=target)
    r = np.corrcoef(predicted.ravel(), actual.ravel())[0, 1]
    slope = np.polyfit(predicted.ravel(), actual.ravel(), 1)[0]
    return r, slope


TIGHT = {"tol": 1e-10, "max_iter": 10_000}


@pytest.mark.parametrize(
    "model, kind",
    [
        (PoissonRegressor(alpha=0.05, **TIGHT), "poisson"),
        (GammaRegressor(alpha=0.05, **TIGHT), "gamma"),
        (TweedieRegressor(power=1.5, alpha=0.05, **TIGHT), "tweedie"),
        (TweedieRegressor(power=0.0, alpha=0.05, **TIGHT), "normal"),
        (TweedieRegressor(power=1.2, alpha=0.05, **TIGHT), "tweedie"),
        (TweedieRegressor(power=3.0, alpha=0.05, **TIGHT), "gamma"),
    ],
    ids=["poisson", "gamma", "tweedie1.5", "normal-identity", "tweedie1.2", "p3"],
)
def test_glm_influence_matches_leave_one_out(model, kind):
    X, y = _glm_data(kind)
    scorer = InfluenceScorer(model).fit(X[:120], y[:120])
    assert scorer.train_gradient_ == "total"  # alpha is on the mean scale
    for target in ("loss", "prediction"):
        r, slope = _loo_agreement(scorer, X[120:124], y[120:124], target=target)
        assert r > 0.99, (target, r)
        assert 0.9 < slope < 1.15, (target, slope)


@pytest.mark.parametrize(
    "model, power",
    [
        (PoissonRegressor(alpha=0.1), 1.0),
        (GammaRegressor(alpha=0.1), 2.0),
        (TweedieRegressor(power=1.5, alpha=0.1), 1.5),
        (TweedieRegressor(power=0.0, alpha=0.1), 0.0),
    ],
)
def test_glm_loss_is_half_sklearns_deviance(model, power):
    X, y = _glm_data("gamma" if power >= 2 else "tweedie" if power > 1 else "poisson")
    if power == 0:
        X, y = _glm_data("normal")
    model.fit(X, y)
    adapter = make_adapter(model, X, y)
    mu = model.predict(X[:20])
    expected = [
        mean_tweedie_deviance(y[i : i + 1], mu[i : i + 1], power=power) / 2
        for i in range(20)
    ]
    assert_allclose(adapter.loss(X[:20], y[:20]), expected, rtol=1e-9, atol=1e-12)
    assert_allclose(adapter.prediction(X[:20]), mu, rtol=1e-10)


@pytest.mark.parametrize("weighted", [False, True])
def test_glm_objective_is_stationary_at_sklearns_fit(weighted):
    X, y = _glm_data("poisson")
    w = np.random.default_rng(1).uniform(0.2, 3.0, len(y)) if weighted else None
    model = PoissonRegressor(alpha=0.2, **TIGHT).fit(X, y, sample_weight=w)
    adapter = make_adapter(model, X, y, sample_weight=w)
    assert np.linalg.norm(adapter.objective_grad()) < 1e-7
    # and the Hessian is the derivative of that gradient (finite differences)
    theta, v = adapter.params(), np.random.default_rng(2).normal(size=adapter.n_params)
    eps = 1e-6
    grads = []
    for sign in (1, -1):
        shifted = adapter._with_params(theta + sign * eps * v)
        grads.append(shifted.objective_grad())
    assert_allclose(
        adapter.hessian_matvec(v), (grads[0] - grads[1]) / (2 * eps), rtol=1e-6
    )


def test_weighted_glm_removal_matches_weighted_refit():
    X, y = _glm_data("poisson")
    w = np.random.default_rng(3).uniform(0.2, 3.0, 120)
    scorer = InfluenceScorer(PoissonRegressor(alpha=0.05, **TIGHT))
    scorer.fit(X[:120], y[:120], sample_weight=w)
    r, slope = _loo_agreement(scorer, X[120:124], y[120:124])
    assert r > 0.99 and 0.9 < slope < 1.15, (r, slope)


@pytest.mark.parametrize("binary", [True, False])
def test_ridge_classifier_matches_leave_one_out(binary, cancer, iris):
    X, y = cancer if binary else iris
    Xtr, ytr, Xq, yq = X[:-6], y[:-6], X[-6:], y[-6:]
    scorer = InfluenceScorer(RidgeClassifier(alpha=30.0)).fit(Xtr, ytr)
    assert scorer.train_gradient_ == "loss"
    r, slope = _loo_agreement(scorer, Xq, yq)
    assert r > 0.99 and 0.9 < slope < 1.15, (r, slope)


def test_ridge_classifier_targets_are_plus_minus_one(iris):
    X, y = iris
    model = RidgeClassifier(alpha=1.0).fit(X, y)
    adapter = make_adapter(model, X, y)
    # at the fitted ridge solution the gradient of the objective vanishes,
    # which pins the +-1 target encoding and the alpha / n scale
    assert np.linalg.norm(adapter.objective_grad()) < 1e-10


@pytest.mark.parametrize("weighted", ["logistic", "ridge"])
def test_weighted_models_match_weighted_leave_one_out(weighted, cancer, diabetes):
    if weighted == "logistic":
        X, y = cancer
        model = LogisticRegression(C=0.05, **TIGHT)
    else:
        X, y = diabetes
        model = Ridge(alpha=20.0)
    w = np.random.default_rng(0).uniform(0.2, 3.0, len(y) - 6)
    scorer = InfluenceScorer(model).fit(X[:-6], y[:-6], sample_weight=w)
    r, slope = _loo_agreement(scorer, X[-6:], y[-6:])
    assert r > 0.99 and 0.9 < slope < 1.15, (r, slope)
    # the weights are not ignored: the unweighted scorer predicts otherwise
    plain = InfluenceScorer(model).fit(X[:-6], y[:-6])
    S_w, S = scorer.influence(X[-6:], y[-6:]), plain.influence(X[-6:], y[-6:])
    assert np.max(np.abs(S_w - S)) > 0.05 * np.max(np.abs(S))


def test_zero_weight_is_removal(cancer):
    X, y = cancer
    w = np.ones(len(y))
    w[:5] = 0.0
    model = LogisticRegression(C=0.5, **TIGHT)
    weighted = InfluenceScorer(model).fit(X, y, sample_weight=w)
    dropped = InfluenceScorer(model).fit(X[5:], y[5:])
    S_w = weighted.influence(X[:3], y[:3])
    # same model, same curvature; zero-weight rows have zero influence
    assert_allclose(S_w[:, :5], 0.0, atol=1e-12)
    n_w, n_d = weighted.n_train_, dropped.n_train_
    assert_allclose(S_w[:, 5:] / n_w, dropped.influence(X[:3], y[:3]) / n_d, rtol=1e-6)


@pytest.mark.parametrize("frozen_weights", [True, False])
def test_frozen_weighted_model_needs_its_weights(frozen_weights, cancer):
    X, y = cancer
    w = np.where(y == 1, 4.0, 0.5)
    model = LogisticRegression(C=1.0, **TIGHT).fit(X, y, sample_weight=w)
    scorer = InfluenceScorer(FrozenEstimator(model))
    if frozen_weights:
        with warnings.catch_warnings():
            warnings.simplefilter("error", NotAtOptimumWarning)
            scorer.fit(X, y, sample_weight=w)
        assert scorer.grad_norm_ < 1e-6
    else:
        with pytest.warns(NotAtOptimumWarning, match="sample_weight"):
            scorer.fit(X, y)


def test_pipeline_gets_the_weights_on_its_last_step(cancer):
    X, y = cancer
    w = np.random.default_rng(5).uniform(0.2, 3.0, len(y))
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, **TIGHT))
    scorer = InfluenceScorer(pipe).fit(X, y, sample_weight=w)
    reference = LogisticRegression(C=0.5, **TIGHT).fit(
        StandardScaler().fit_transform(X), y, sample_weight=w
    )
    assert_allclose(scorer.estimator_[-1].coef_, reference.coef_, rtol=1e-6)
    assert scorer.grad_norm_ < 1e-6


def test_sample_weight_is_validated(cancer):
    X, y = cancer
    scorer = InfluenceScorer(LogisticRegression())
    with pytest.raises(ValueError, match="non-negative"):
        scorer.fit(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(160,\)"):
        scorer.fit(X, y, sample_weight=np.ones(3))


# -- SGD: the objective mapping ------------------------------------------------


def _sgd_at(model, reference, X, y):
    """An SGD model whose coefficients are set to ``reference``'s optimum."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.set_params(max_iter=2, tol=None).fit(X, y)
    model.coef_ = reference.coef_.reshape(model.coef_.shape).copy()
    model.intercept_ = np.reshape(reference.intercept_, model.intercept_.shape).copy()
    return model


@pytest.mark.parametrize("train_gradient", ["loss", "total"])
def test_sgd_classifier_is_logistic_regression_with_c_from_alpha(
    train_gradient, cancer
):
    X, y = cancer
    n, alpha = len(y), 0.01
    lr = LogisticRegression(C=1.0 / (alpha * n), **TIGHT).fit(X, y)
    sgd = _sgd_at(SGDClassifier(loss="log_loss", alpha=alpha), lr, X, y)
    kw = {"train_gradient": train_gradient}
    S_lr = InfluenceScorer(FrozenEstimator(lr), **kw).fit(X, y)
    S_sgd = InfluenceScorer(FrozenEstimator(sgd), **kw).fit(X, y)
    assert S_sgd.grad_norm_ < 1e-7  # the same objective, so the same optimum
    assert_allclose(
        S_sgd.influence(X[:5], y[:5]), S_lr.influence(X[:5], y[:5]), atol=1e-6
    )
    assert_allclose(S_sgd.self_influence_, S_lr.self_influence_, atol=1e-6)


def test_sgd_regressor_is_ridge_with_alpha_times_n(diabetes):
    X, y = diabetes
    n, alpha = len(y), 0.05
    ridge = Ridge(alpha=alpha * n).fit(X, y)
    sgd = _sgd_at(SGDRegressor(alpha=alpha), ridge, X, y)
    S_r = InfluenceScorer(FrozenEstimator(ridge), train_gradient="loss").fit(X, y)
    S_s = InfluenceScorer(FrozenEstimator(sgd), train_gradient="loss").fit(X, y)
    assert S_s.grad_norm_ < 1e-7
    assert_allclose(S_s.influence(X[:5], y[:5]), S_r.influence(X[:5], y[:5]), atol=1e-6)


def test_sgd_multiclass_is_one_vs_rest(iris):
    """Each class row is the binary logistic regression of that class vs rest."""
    X, y = iris
    n, alpha = len(y), 0.01
    rows = [
        LogisticRegression(C=1.0 / (alpha * n), **TIGHT).fit(X, y == c)
        for c in np.unique(y)
    ]
    ref = type("Ref", (), {})()
    ref.coef_ = np.vstack([m.coef_ for m in rows])
    ref.intercept_ = np.concatenate([m.intercept_ for m in rows])
    sgd = _sgd_at(SGDClassifier(loss="log_loss", alpha=alpha), ref, X, y)
    scorer = InfluenceScorer(FrozenEstimator(sgd)).fit(X, y)
    assert scorer.grad_norm_ < 1e-7
    # removal at the same alpha: the minimiser of the objective without the row
    r, slope = _loo_agreement(scorer, X[::30], y[::30])
    assert r > 0.99 and 0.9 < slope < 1.15, (r, slope)


def test_sgd_fitted_by_sgd_runs_and_says_it_is_not_at_an_optimum(cancer):
    X, y = cancer
    with pytest.warns(NotAtOptimumWarning):
        scorer = InfluenceScorer(
            SGDClassifier(loss="log_loss", alpha=1e-3, random_state=0)
        ).fit(X, y)
    assert scorer.influence(X[:2], y[:2]).shape == (2, len(y))


def test_sgd_multiclass_class_weight_is_refused(iris):
    X, y = iris
    model = SGDClassifier(loss="log_loss", class_weight="balanced").fit(X, y)
    with pytest.raises(ValueError, match="one-vs-rest"):
        make_adapter(model, X, y)


# -- CV models: the selected hyper-parameter held fixed ---------------------------


def test_ridge_cv_is_ridge_at_alpha_(diabetes):
    X, y = diabetes
    cv = RidgeCV(alphas=(0.1, 10.0, 100.0)).fit(X[:-5], y[:-5])
    ridge = Ridge(alpha=cv.alpha_).fit(X[:-5], y[:-5])
    S_cv = InfluenceScorer(cv).fit(X[:-5], y[:-5])
    S_r = InfluenceScorer(ridge).fit(X[:-5], y[:-5])
    assert_allclose(
        S_cv.influence(X[-5:], y[-5:]), S_r.influence(X[-5:], y[-5:]), rtol=1e-8
    )
    r, slope = _loo_agreement(S_cv, X[-5:], y[-5:])
    assert r > 0.99 and 0.9 < slope < 1.15, (r, slope)


def test_logistic_regression_cv_is_logistic_regression_at_c_(cancer):
    X, y = cancer
    cv = LogisticRegressionCV(
        Cs=[0.03, 0.1],
        cv=3,
        l1_ratios=(0.0,),
        scoring="neg_log_loss",
        use_legacy_attributes=False,
        **TIGHT,
    ).fit(X[:-5], y[:-5])
    lr = LogisticRegression(C=float(np.ravel(cv.C_)[0]), **TIGHT).fit(X[:-5], y[:-5])
    S_cv = InfluenceScorer(cv).fit(X[:-5], y[:-5])
    S_lr = InfluenceScorer(lr).fit(X[:-5], y[:-5])
    assert_allclose(
        S_cv.influence(X[-5:], y[-5:]),
        S_lr.influence(X[-5:], y[-5:]),
        rtol=1e-4,
        atol=1e-6,
    )
    r, slope = _loo_agreement(S_cv, X[-5:], y[-5:])
    assert r > 0.99 and 0.9 < slope < 1.15, (r, slope)


def test_ridge_classifier_cv_holds_alpha_fixed(iris):
    X, y = iris
    cv = RidgeClassifierCV(alphas=(0.1, 10.0)).fit(X, y)
    scorer = InfluenceScorer(cv).fit(X, y)
    assert scorer.grad_norm_ < 1e-8
    r, slope = _loo_agreement(scorer, X[::40], y[::40])
    assert r > 0.99 and 0.9 < slope < 1.15, (r, slope)


# -- HuberRegressor: the scale is a parameter --------------------------------------


def _huber_data(n=140, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + rng.normal(scale=0.5, size=n)
    y[::10] += rng.normal(scale=8.0, size=len(y[::10]))  # outliers
    return X, y


@pytest.mark.parametrize("weighted", [False, True])
def test_huber_objective_is_sklearns(weighted):
    from sklearn.linear_model._huber import _huber_loss_and_gradient

    X, y = _huber_data()
    w = np.random.default_rng(1).uniform(0.3, 2.0, len(y)) if weighted else None
    model = HuberRegressor(alpha=0.5, tol=1e-10, max_iter=10_000)
    model.fit(X, y, sample_weight=w)
    adapter = make_adapter(model, X, y, sample_weight=w)
    sw = np.ones(len(y)) if w is None else w
    theta = adapter.params()
    value, grad = _huber_loss_and_gradient(theta, X, y, model.epsilon, 0.5, sw)
    n = len(y)
    J = sw @ adapter.loss(X, y) / n + 0.5 * theta @ (adapter.penalty * theta)
    assert_allclose(J, value / n, rtol=1e-12)
    assert_allclose(adapter.objective_grad(), grad / n, atol=1e-12)
    # L-BFGS-B stops on the objective's relative change, near the kinks
    assert np.linalg.norm(adapter.objective_grad()) < 1e-4
    # the Hessian is the derivative of the gradient away from the kinks
    v = np.random.default_rng(2).normal(size=adapter.n_params)
    eps = 1e-7
    g = [adapter._with_params(theta + s * eps * v).objective_grad() for s in (1, -1)]
    assert_allclose(adapter.hessian_matvec(v), (g[0] - g[1]) / (2 * eps), rtol=1e-5)


@pytest.mark.parametrize("weighted", [False, True])
def test_huber_influence_matches_leave_one_out(weighted):
    X, y = _huber_data()
    w = np.random.default_rng(1).uniform(0.3, 2.0, 130) if weighted else None
    model = HuberRegressor(alpha=1.0, tol=1e-10, max_iter=10_000)
    scorer = InfluenceScorer(model).fit(X[:130], y[:130], sample_weight=w)
    r, slope = _loo_agreement(scorer, X[130:134], y[130:134])
    assert r > 0.99 and 0.9 < slope < 1.15, (r, slope)
