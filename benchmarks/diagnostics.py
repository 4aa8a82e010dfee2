"""Agreement of ``InfluenceScorer.diagnostics()`` with statsmodels.

Unpenalised models fitted by scikit-learn to a tight tolerance, the same
models fitted by statsmodels (``OLS``, ``GLM``); reported is the largest
absolute difference per column between skinfluence's table and
``OLSInfluence`` / ``GLMInfluence``, and, for ridge, between ``loo_residual``
and ``RidgeCV``'s stored leave-one-out errors.

The one difference that is not rounding: ``dfbeta`` of a GLM whose link is
not canonical (Gamma with a log link), where statsmodels' ``d_params`` is a
Fisher-scoring step and skinfluence's the Newton step on the observed
Hessian (the one an actual refit takes; see ``benchmarks/newton.py``).

Run: ``python benchmarks/diagnostics.py`` (seconds; needs statsmodels, in the
dev extra).
"""

from __future__ import annotations

import warnings

import numpy as np
import statsmodels.api as sm
from sklearn.datasets import load_diabetes
from sklearn.linear_model import (
    GammaRegressor,
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
    RidgeCV,
)

from skinfluence import InfluenceScorer

TIGHT = {"tol": 1e-12, "max_iter": 10_000}


def _dfbeta(table):
    d = table.filter(like="dfbeta_").to_numpy()
    return d[:, [d.shape[1] - 1, *range(d.shape[1] - 1)]]


def _glm_data(kind, n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    eta = 0.3 + X @ np.array([0.4, -0.3, 0.2, 0.1])
    if kind == "binomial":
        return X, (rng.random(n) < 1 / (1 + np.exp(-3 * eta))).astype(int)
    if kind == "poisson":
        return X, rng.poisson(np.exp(eta)).astype(float)
    return X, rng.gamma(2.0, np.exp(eta) / 2.0)


def main() -> None:
    rows = []
    X, y = load_diabetes(return_X_y=True)
    table = InfluenceScorer(LinearRegression()).fit(X, y).diagnostics()
    ref = sm.OLS(y, sm.add_constant(X)).fit().get_influence()
    pairs = {
        "leverage": ref.hat_matrix_diag,
        "studentized_residual": ref.resid_studentized_internal,
        "external_studentized_residual": ref.resid_studentized_external,
        "cooks_distance": ref.cooks_distance[0],
        "dffits": ref.dffits[0],
        "cov_ratio": ref.cov_ratio,
        "loo_residual": ref.resid_press,
    }
    diffs = {k: np.max(np.abs(table[k] - v)) for k, v in pairs.items()}
    diffs["dfbeta"] = np.max(np.abs(_dfbeta(table) - ref.dfbeta))
    rows.append(("OLS (diabetes) vs OLSInfluence", diffs))

    families = {
        "binomial": (
            LogisticRegression(C=np.inf, solver="newton-cholesky", **TIGHT),
            sm.families.Binomial(),
            None,
        ),
        "poisson": (
            PoissonRegressor(alpha=0, solver="newton-cholesky", **TIGHT),
            sm.families.Poisson(),
            None,
        ),
        "gamma (log link)": (
            GammaRegressor(alpha=0, solver="newton-cholesky", **TIGHT),
            sm.families.Gamma(sm.families.links.Log()),
            "X2",
        ),
    }
    for name, (model, family, scale) in families.items():
        X, y = _glm_data(name.split()[0])
        table = InfluenceScorer(model).fit(X, y).diagnostics()
        result = sm.GLM(y, sm.add_constant(X), family=family).fit(
            tol=1e-14, scale=scale
        )
        ref = result.get_influence()
        diffs = {
            "leverage": np.max(np.abs(table["leverage"] - ref.hat_matrix_diag)),
            "studentized_residual": np.max(
                np.abs(table["studentized_residual"] - ref.resid_studentized)
            ),
            "cooks_distance": np.max(
                np.abs(table["cooks_distance"] - ref.cooks_distance[0])
            ),
            "dfbeta (one-step)": np.max(np.abs(_dfbeta(table) - ref.d_params)),
        }
        rows.append((f"{name} GLM vs GLMInfluence", diffs))

    X, y = load_diabetes(return_X_y=True)
    cv = RidgeCV(alphas=[3.0], store_cv_results=True).fit(X, y)
    table = InfluenceScorer(Ridge(alpha=3.0)).fit(X, y).diagnostics()
    rows.append(
        (
            "Ridge alpha=3 vs RidgeCV leave-one-out",
            {
                "loo_residual^2": np.max(
                    np.abs(table["loo_residual"] ** 2 - cv.cv_results_[:, 0])
                    / cv.cv_results_[:, 0].max()
                )
            },
        )
    )
    print("| model vs reference | column | max abs difference |")
    print("|---|---|---|")
    for name, diffs in rows:
        for col, d in diffs.items():
            print(f"| {name} | {col} | {d:.1e} |")


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main()
