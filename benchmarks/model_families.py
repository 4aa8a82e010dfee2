"""Leave-one-out fidelity for every closed-form scikit-learn model family.

For each family: fit it tightly on a bundled or generated training set,
remove *every* training point in turn and refit (warm start, tol 1e-10; the
SGD models' ground truth is the minimiser of the same objective by L-BFGS,
since their own solver is stochastic), and compare the actual change of a few
query losses with the first-order prediction ``influence / n``.  Reported:
Pearson and the regression slope of actual on predicted (1 = unbiased; above
1 is the leverage effect of first order: the Newton correction of
``method="newton"`` is the cure), with and without sample weights.

Run: ``python benchmarks/model_families.py`` (about a minute, one core).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.linear_model import (
    GammaRegressor,
    HuberRegressor,
    LinearRegression,
    LogisticRegression,
    LogisticRegressionCV,
    PoissonRegressor,
    Ridge,
    RidgeClassifier,
    RidgeCV,
    SGDClassifier,
    SGDRegressor,
    TweedieRegressor,
)
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skinfluence import InfluenceScorer
from skinfluence.evaluation import loo_change

TIGHT = {"tol": 1e-10, "max_iter": 10_000}


def _glm(kind: str, n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    mu = np.exp(0.3 + X @ np.array([0.4, -0.3, 0.2, 0.1, 0.0]))
    if kind == "poisson":
        y = rng.poisson(mu).astype(float)
    elif kind == "gamma":
        y = rng.gamma(2.0, mu / 2.0)
    else:
        y = np.array([rng.gamma(2.0, 0.6, size=c).sum() for c in rng.poisson(mu)])
    return X, y


def _huber(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0, 0.3]) + rng.normal(scale=0.5, size=n)
    y[::10] += rng.normal(scale=8.0, size=len(y[::10]))
    return X, y


def _bundled(name: str, n: int = 300):
    loader = {
        "cancer": load_breast_cancer,
        "diabetes": load_diabetes,
        "digits": load_digits,
    }[name]
    X, y = loader(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(y))[:n]
    return X[rows], y[rows]


def _sgd_at_optimum(model, X, y):
    """SGD fitted, then its coefficients moved to the objective's minimiser."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
        scorer = InfluenceScorer(model).fit(X, y)
    return scorer.adapter_.retrain(np.arange(len(y)), warm_start=True).estimator


CASES = [
    ("LinearRegression", lambda: (LinearRegression(), _bundled("diabetes"))),
    ("Ridge alpha=10", lambda: (Ridge(alpha=10.0), _bundled("diabetes"))),
    ("RidgeCV", lambda: (RidgeCV(alphas=(1.0, 10.0, 100.0)), _bundled("diabetes"))),
    (
        "LogisticRegression C=0.1",
        lambda: (LogisticRegression(C=0.1, **TIGHT), _bundled("cancer")),
    ),
    (
        "LogisticRegressionCV",
        lambda: (
            LogisticRegressionCV(
                Cs=[0.03, 0.1, 0.3],
                l1_ratios=(0.0,),
                scoring="neg_log_loss",
                use_legacy_attributes=False,
                **TIGHT,
            ),
            _bundled("cancer"),
        ),
    ),
    (
        "LogisticRegression multinomial (digits)",
        lambda: (LogisticRegression(C=0.05, **TIGHT), _bundled("digits")),
    ),
    (
        "RidgeClassifier alpha=30",
        lambda: (RidgeClassifier(alpha=30.0), _bundled("cancer")),
    ),
    (
        "RidgeClassifier multiclass (digits)",
        lambda: (RidgeClassifier(alpha=30.0), _bundled("digits")),
    ),
    ("SGDClassifier log_loss", "sgd_clf"),
    ("SGDClassifier one-vs-rest (digits)", "sgd_ovr"),
    ("SGDRegressor squared_error", "sgd_reg"),
    (
        "PoissonRegressor",
        lambda: (PoissonRegressor(alpha=0.05, **TIGHT), _glm("poisson")),
    ),
    ("GammaRegressor", lambda: (GammaRegressor(alpha=0.05, **TIGHT), _glm("gamma"))),
    (
        "TweedieRegressor power=1.5",
        lambda: (TweedieRegressor(power=1.5, alpha=0.05, **TIGHT), _glm("tweedie")),
    ),
    (
        "HuberRegressor",
        lambda: (HuberRegressor(alpha=1.0, tol=1e-10, max_iter=10_000), _huber()),
    ),
]


def _build(case):
    if case == "sgd_clf":
        X, y = _bundled("cancer")
        model = SGDClassifier(loss="log_loss", alpha=0.01, random_state=0)
    elif case == "sgd_ovr":
        X, y = _bundled("digits")  # alpha = 1 / (C n) for the C of the LR row
        model = SGDClassifier(loss="log_loss", alpha=0.07, random_state=0)
    elif case == "sgd_reg":
        X, y = _bundled("diabetes")
        model = SGDRegressor(alpha=0.05, random_state=0)
    else:
        return case()
    return _sgd_at_optimum(model, X, y), (X, y)


def measure(name, case, weighted: bool, n_query: int = 5):
    from sklearn.frozen import FrozenEstimator

    model, (X, y) = _build(case)
    is_sgd = not callable(case)
    Xtr, ytr, Xq, yq = X[:-n_query], y[:-n_query], X[-n_query:], y[-n_query:]
    w = None
    if weighted:
        w = np.random.default_rng(1).uniform(0.3, 3.0, len(ytr))
    if is_sgd:  # refit the minimiser on the training part (with its weights)
        model, _ = _build(case)
        scorer = InfluenceScorer(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scorer.fit(Xtr, ytr, sample_weight=w)
        model = scorer.adapter_.retrain(np.arange(len(ytr))).estimator
        scorer = InfluenceScorer(FrozenEstimator(model)).fit(Xtr, ytr, sample_weight=w)
    else:
        scorer = InfluenceScorer(model).fit(Xtr, ytr, sample_weight=w)
    predicted = scorer.influence(Xq, yq) / scorer.n_train_
    actual = loo_change(scorer, Xq, yq, indices=range(len(ytr)))
    r = np.corrcoef(predicted.ravel(), actual.ravel())[0, 1]
    slope = np.polyfit(predicted.ravel(), actual.ravel(), 1)[0]
    return r, slope, len(ytr), scorer.adapter_.n_params, scorer.train_gradient_


def main() -> None:
    print(
        "| family | n | p | removal gradient | Pearson | slope | weighted Pearson "
        "| weighted slope |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for name, case in CASES:
            r, s, n, p, tg = measure(name, case, weighted=False)
            rw, sw, *_ = measure(name, case, weighted=True)
            print(
                f"| {name} | {n} | {p} | {tg} | {r:.4f} | {s:.3f} | {rw:.4f} "
                f"| {sw:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
