"""Newton-corrected removal against first order, where leverage matters.

For each setting every training row (up to 200) is removed and the model
refitted (warm start, tol 1e-10) as the ground truth.  Reported, pooled over
rows and parameters: the slope of the actual parameter change on the
predicted one (1 = unbiased) and Pearson, for ``parameter_change(...,
method="first_order")`` and ``method="newton"``; and the seconds of
``self_influence(method=...)`` over all rows (best of 3, one thread), i.e.
what the correction costs.

Run: ``python benchmarks/newton.py`` (about a minute).
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
)
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skinfluence import InfluenceScorer

TIGHT = {"tol": 1e-10, "max_iter": 10_000}


def _high_leverage(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    X[:4] *= 6.0
    y = X @ np.array([1.0, -1.0, 0.5]) + 2.0 + rng.normal(size=n)
    return X, y


def _scaled(loader, n):
    X, y = loader(return_X_y=True)
    rows = np.random.default_rng(0).permutation(len(y))[:n]
    return StandardScaler().fit_transform(X)[rows], y[rows]


def _poisson(n=200):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 5))
    X[:5] *= 4.0
    return X, rng.poisson(np.exp(0.3 + X @ [0.3, -0.2, 0.1, 0.1, 0.0])).astype(float)


SETTINGS = [
    ("OLS, 4 high-leverage rows (n=60)", LinearRegression(), _high_leverage()),
    ("Ridge alpha=1, diabetes (n=200)", Ridge(alpha=1.0), _scaled(load_diabetes, 200)),
    (
        "LogisticRegression C=1, breast cancer (n=200)",
        LogisticRegression(C=1.0, **TIGHT),
        _scaled(load_breast_cancer, 200),
    ),
    (
        "LogisticRegression C=0.1, breast cancer (n=200)",
        LogisticRegression(C=0.1, **TIGHT),
        _scaled(load_breast_cancer, 200),
    ),
    (
        "Multinomial LR C=0.1, digits (n=200, p=650)",
        LogisticRegression(C=0.1, **TIGHT),
        _scaled(load_digits, 200),
    ),
    (
        "Poisson alpha=0.01, leverage rows (n=200)",
        PoissonRegressor(alpha=0.01, **TIGHT),
        _poisson(),
    ),
]


def _best(fn, repeats=3):
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    print(
        "| setting | first-order slope | Newton slope | first-order Pearson "
        "| Newton Pearson | self-influence s (first / Newton) |"
    )
    print("|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for name, model, (X, y) in SETTINGS:
            scorer = InfluenceScorer(model).fit(X, y)
            a = scorer.adapter_
            n = scorer.n_train_
            # the flat direction of a multinomial model carries no information
            P = np.eye(a.n_params) - a.null_basis @ a.null_basis.T
            actual = (
                np.array(
                    [
                        a.retrain(np.arange(n) != i).params() - a.params()
                        for i in range(n)
                    ]
                )
                @ P
            )
            row = [name]
            stats = {}
            for method in ("first_order", "newton"):
                pred = scorer.parameter_change(range(n), method=method) @ P
                slope = np.polyfit(pred.ravel(), actual.ravel(), 1)[0]
                r = np.corrcoef(pred.ravel(), actual.ravel())[0, 1]
                stats[method] = (slope, r)

            def first(s=scorer):
                s.__dict__.pop("self_influence_", None)  # it is cached
                return s.self_influence(method="first_order")

            t1 = _best(first)
            t2 = _best(lambda s=scorer: s.self_influence(method="newton"))
            row += [
                f"{stats['first_order'][0]:.3f}",
                f"{stats['newton'][0]:.3f}",
                f"{stats['first_order'][1]:.4f}",
                f"{stats['newton'][1]:.4f}",
                f"{t1:.4f} / {t2:.4f}",
            ]
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
