"""Regression diagnostics and Newton-corrected removal against references.

References: statsmodels' ``OLSInfluence`` and ``GLMInfluence`` (unpenalised
models), scikit-learn's ``RidgeCV`` leave-one-out residuals (penalised), and
actual leave-one-out refits (``loo_change``).
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import (
    GammaRegressor,
    HuberRegressor,
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
    RidgeCV,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceScorer
from skinfluence.evaluation import loo_change

sm = pytest.importorskip("statsmodels.api")

TIGHT = {"tol": 1e-12, "max_iter": 10_000}
COLUMNS = [
    "leverage",
    "residual",
    "studentized_residual",
    "external_studentized_residual",
    "cooks_distance",
    "dffits",
    "cov_ratio",
    "loo_residual",
    "self_influence",
]


def _high_leverage(n=60, seed=0):
    """A few far-out rows, where first order is most biased."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    X[:4] *= 6.0
    y = X @ np.array([1.0, -1.0, 0.5]) + 2.0 + rng.normal(size=n)
    return X, y


def _dfbeta(table):
    """statsmodels orders [const, features]; skinfluence [features, intercept]."""
    d = table.filter(like="dfbeta_").to_numpy()
    return d[:, [d.shape[1] - 1, *range(d.shape[1] - 1)]]


@pytest.mark.parametrize("data", ["diabetes", "high_leverage"])
def test_ols_matches_statsmodels(data):
    if data == "diabetes":
        X, y = load_diabetes(return_X_y=True, as_frame=True)
    else:
        X, y = _high_leverage()
    table = InfluenceScorer(LinearRegression()).fit(X, y).diagnostics()
    assert list(table.columns[:9]) == COLUMNS
    ref = sm.OLS(np.asarray(y), sm.add_constant(np.asarray(X))).fit().get_influence()
    expected = {
        "leverage": ref.hat_matrix_diag,
        "residual": ref.results.resid,
        "studentized_residual": ref.resid_studentized_internal,
        "external_studentized_residual": ref.resid_studentized_external,
        "cooks_distance": ref.cooks_distance[0],
        "dffits": ref.dffits[0],
        "cov_ratio": ref.cov_ratio,
        "loo_residual": ref.resid_press,
    }
    for name, values in expected.items():
        assert_allclose(table[name], values, rtol=1e-8, atol=1e-10, err_msg=name)
    assert_allclose(_dfbeta(table), ref.dfbeta, rtol=1e-8, atol=1e-10)


def test_index_and_names_follow_the_dataframe():
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X.index = X.index + 1000
    table = InfluenceScorer(LinearRegression()).fit(X, y).diagnostics()
    assert table.index[0] == 1000
    assert "dfbeta_bmi" in table and "dfbeta_intercept" in table
    plain = InfluenceScorer(LinearRegression()).fit(X.to_numpy(), y).diagnostics()
    assert list(plain.index[:3]) == [0, 1, 2] and "dfbeta_x2" in plain


def _glm_check(scorer, result, hat, *, dfbeta=True):
    table = scorer.diagnostics()
    ref = result.get_influence()
    ref._hat_matrix_diag = hat  # the leverage GLMInfluence's formulas then use
    assert_allclose(table["leverage"], hat, rtol=1e-7, atol=1e-10)
    assert_allclose(
        table["studentized_residual"], ref.resid_studentized, rtol=1e-6, atol=1e-9
    )
    assert_allclose(table["cooks_distance"], ref.cooks_distance[0], rtol=1e-6)
    if dfbeta:
        assert_allclose(_dfbeta(table), ref.d_params, rtol=1e-6, atol=1e-9)


def test_logistic_matches_statsmodels_glm():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (rng.random(300) < 1 / (1 + np.exp(-(X @ [1.0, -0.5, 0.3, 0.0])))).astype(int)
    scorer = InfluenceScorer(
        LogisticRegression(C=np.inf, solver="newton-cholesky", **TIGHT)
    ).fit(X, y)
    result = sm.GLM(y, sm.add_constant(X), family=sm.families.Binomial()).fit(tol=1e-14)
    _glm_check(scorer, result, result.get_hat_matrix_diag())


@pytest.mark.parametrize("family", ["poisson", "gamma"])
def test_glms_match_statsmodels(family):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    mu = np.exp(0.3 + X @ np.array([0.4, -0.3, 0.2, 0.1]))
    if family == "poisson":
        y = rng.poisson(mu).astype(float)
        model, fam = PoissonRegressor(alpha=0, **TIGHT), sm.families.Poisson()
    else:
        y = rng.gamma(2.0, mu / 2.0)
        model = GammaRegressor(alpha=0, **TIGHT)
        fam = sm.families.Gamma(sm.families.links.Log())
    scorer = InfluenceScorer(model).fit(X, y)
    scale = None if family == "poisson" else "X2"  # Poisson: dispersion 1
    result = sm.GLM(y, sm.add_constant(X), family=fam).fit(tol=1e-14, scale=scale)
    # Gamma's log link is not canonical: statsmodels' d_params is a
    # Fisher-scoring step there, ours the Newton step (checked against refits)
    _glm_check(scorer, result, result.get_hat_matrix_diag(), dfbeta=family == "poisson")


def test_ridge_loo_residual_is_ridgecvs():
    X, y = load_diabetes(return_X_y=True)
    cv = RidgeCV(alphas=[3.0], store_cv_results=True).fit(X, y)
    table = InfluenceScorer(Ridge(alpha=3.0)).fit(X, y).diagnostics()
    # RidgeCV stores squared leave-one-out errors for the default scoring
    assert_allclose(table["loo_residual"] ** 2, cv.cv_results_[:, 0], rtol=1e-8)
    # and they are the actual refits' residuals
    scorer = InfluenceScorer(Ridge(alpha=3.0)).fit(X, y)
    for i in (0, 17):
        keep = np.arange(len(y)) != i
        refit = Ridge(alpha=3.0).fit(X[keep], y[keep])
        assert_allclose(
            table["loo_residual"][i], y[i] - refit.predict(X[i : i + 1])[0], rtol=1e-8
        )
    assert_allclose(table["self_influence"], scorer.self_influence_)


@pytest.mark.parametrize("model", [LinearRegression(), Ridge(alpha=5.0)])
def test_newton_is_exact_for_least_squares(model):
    # the prediction is linear in the parameters, so the exact parameter
    # step gives its exact change (a loss is quadratic: see the next test)
    target = "prediction"
    X, y = _high_leverage()
    scorer = InfluenceScorer(model).fit(X[:-3], y[:-3])
    idx = [0, 1, 2, 3, 10, 20]  # the first four are the high-leverage rows
    actual = loo_change(scorer, X[-3:], y[-3:], indices=idx, target=target)
    newton = scorer.influence(X[-3:], y[-3:], target=target, method="newton")
    assert_allclose(newton[:, idx] / scorer.n_train_, actual, rtol=1e-8, atol=1e-10)
    first = scorer.influence(X[-3:], y[-3:], target=target)[:, idx] / scorer.n_train_
    # first order underestimates the high-leverage removals
    assert np.max(np.abs(first - actual)) > 0.05 * np.max(np.abs(actual))
    # parameter changes: the exact leave-one-out shift
    refit = scorer.adapter_.retrain(np.arange(scorer.n_train_) != 0)
    assert_allclose(
        scorer.parameter_change([0], method="newton")[0],
        refit.params() - scorer.adapter_.params(),
        rtol=1e-8,
        atol=1e-10,
    )


def test_newton_self_influence_is_the_exact_loo_loss_change():
    X, y = _high_leverage()
    scorer = InfluenceScorer(LinearRegression()).fit(X, y)
    newton = scorer.self_influence(method="newton")
    for i in (0, 5):
        keep = np.arange(len(y)) != i
        refit = LinearRegression().fit(X[keep], y[keep])
        own = 0.5 * (y[i] - refit.predict(X[i : i + 1])[0]) ** 2
        before = 0.5 * (y[i] - scorer.predict(X[i : i + 1])[0]) ** 2
        # first-order self-influence is the change of the own loss to first
        # order; Newton's is the (linearised) change along the exact step
        assert np.sign(newton[i]) == np.sign(own - before)
    h = scorer.diagnostics()["leverage"].to_numpy()
    assert_allclose(newton, scorer.self_influence_ / (1 - h), rtol=1e-8)


def test_newton_beats_first_order_on_logistic_regression():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    scorer = InfluenceScorer(LogisticRegression(C=0.5, **TIGHT)).fit(X[:150], y[:150])
    idx = range(60)
    actual = loo_change(scorer, X[150:155], y[150:155], indices=idx).ravel()
    stats = {}
    for method in ("first_order", "newton"):
        S = scorer.influence(X[150:155], y[150:155], method=method)[:, :60]
        pred = (S / scorer.n_train_).ravel()
        stats[method] = (
            np.polyfit(pred, actual, 1)[0],
            np.corrcoef(pred, actual)[0, 1],
        )
    assert abs(stats["newton"][0] - 1) < abs(stats["first_order"][0] - 1)
    assert stats["newton"][1] > stats["first_order"][1]
    assert stats["newton"][1] > 0.99  # measured 0.994 (first order: 0.937)


def test_newton_with_cg_equals_newton_with_exact():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)[:120]
    y = y[:120]
    model = LogisticRegression(C=0.5, **TIGHT)
    exact = InfluenceScorer(model, curvature="exact").fit(X, y)
    cg = InfluenceScorer(model, curvature="cg").fit(X, y)
    assert_allclose(
        cg.parameter_change(range(10), method="newton"),
        exact.parameter_change(range(10), method="newton"),
        rtol=1e-5,
        atol=1e-9,
    )


def test_multiclass_diagnostics_keep_what_needs_no_scalar_residual():
    X, y = load_iris(return_X_y=True)
    scorer = InfluenceScorer(
        make_pipeline(StandardScaler(), LogisticRegression(C=1.0, **TIGHT))
    ).fit(X, y)
    table = scorer.diagnostics()
    assert table["residual"].isna().all() and table["dffits"].isna().all()
    assert (table["leverage"] > 0).all() and (table["leverage"] < 1).all()
    assert (table["cooks_distance"] >= 0).all()
    assert "dfbeta_0_sepal length (cm)" not in table  # numpy X: x0..x3
    assert "dfbeta_2_x3" in table and "dfbeta_2_intercept" in table
    # the Newton step predicts refits better than first order here too
    idx = np.argsort(-table["leverage"].to_numpy())[:15]
    actual = np.array(
        [
            scorer.adapter_.retrain(np.arange(len(y)) != i).params()
            - scorer.adapter_.params()
            for i in idx
        ]
    )
    N = scorer.adapter_.null_basis  # the flat direction carries no information
    P = np.eye(len(N)) - N @ N.T
    newton = scorer.parameter_change(idx, method="newton") @ P
    first = scorer.parameter_change(idx) @ P
    actual = actual @ P
    assert np.linalg.norm(newton - actual) < 0.5 * np.linalg.norm(first - actual)


def test_huber_diagnostics_run_and_flag_the_outliers():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2))
    y = X @ np.array([1.0, -2.0]) + rng.normal(scale=0.3, size=100)
    y[:3] += 10.0
    scorer = InfluenceScorer(HuberRegressor(alpha=1.0, tol=1e-10, max_iter=10_000))
    table = scorer.fit(X, y).diagnostics()
    assert list(table.columns[-1:]) == ["dfbeta_scale"]
    assert set(np.argsort(-np.abs(table["residual"].to_numpy()))[:3]) == {0, 1, 2}


def test_bad_method_and_unsupported_models_are_refused():
    X, y = load_diabetes(return_X_y=True)
    scorer = InfluenceScorer(Ridge()).fit(X, y)
    with pytest.raises(ValueError, match="method must be 'first_order', 'newton'"):
        scorer.influence(X[:2], y[:2], method="second")
    assert scorer.parameter_change([], method="newton").shape == (0, 11)


def test_an_isolated_row_warns_and_gives_nan():
    # a row alone on its own feature: leverage 1, removal undetermined
    X = np.vstack([np.c_[np.random.default_rng(0).normal(size=(20, 2)), np.zeros(20)]])
    X = np.vstack([X, [0.0, 0.0, 1.0]])
    y = np.r_[np.random.default_rng(1).normal(size=20), 3.0]
    scorer = InfluenceScorer(LinearRegression(fit_intercept=False)).fit(X, y)
    with pytest.warns(RuntimeWarning, match="leverage 1"):
        change = scorer.parameter_change([20, 0], method="newton")
    assert np.isnan(change[0]).all() and np.isfinite(change[1]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        table = scorer.diagnostics()
    assert_allclose(table["leverage"][20], 1.0, rtol=1e-8)
    assert isinstance(table, pd.DataFrame)


def test_network_leverage_is_the_gauss_newton_hat_matrix():
    """For a network: the rows' blocks add up to the dense GGN, and the
    leverages to its effective degrees of freedom tr(G (G + L2 + damping)^-1)."""
    torch = pytest.importorskip("torch")
    from sklearn.datasets import load_digits

    from skinfluence import TorchClassifier

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)[:120]
    y = y[:120]
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 6), torch.nn.Tanh(), torch.nn.Linear(6, 10)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scorer = InfluenceScorer(
            TorchClassifier(net, weight_decay=1e-2, max_iter=50, random_state=0),
            curvature="ggn",
            damping=1e-3,
        ).fit(X, y)
    a = scorer.adapter_
    J, M = a.row_curvature(slice(None))
    G = np.einsum("bkp,bkl,blq->pq", J, M, J) / len(y)
    dense = a.ggn_matrix()
    assert_allclose(G + np.diag(a.penalty), dense, atol=1e-12)
    table = scorer.diagnostics()
    H = dense + 1e-3 * np.eye(len(dense))
    assert_allclose(table["leverage"].sum(), np.trace(np.linalg.solve(H, G)))
    assert table["residual"].isna().all()
    assert table.columns[-1] == "dfbeta_2.bias[9]"
    # Cook's distance in the norm of the curvature the step was taken with
    assert (table["cooks_distance"] >= 0).all()
