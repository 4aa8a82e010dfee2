"""Approximate backends: each solves the system it claims, checked densely, and
the literature's ranking against actual leave-one-out on digits."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import LogisticRegression

from skinfluence import InfluenceScorer
from skinfluence.curvature import (
    CGCurvature,
    DiagonalCurvature,
    EFCurvature,
    ExactCurvature,
    GGNCurvature,
    IdentityCurvature,
    LiSSACurvature,
    LowRankCurvature,
)
from skinfluence.curvature._base import hessian_diagonal
from skinfluence.evaluation import loo_change, loo_correlation
from skinfluence.models import make_adapter


@pytest.fixture(scope="module")
def wine_adapter(wine):
    X, _, y, _ = wine
    return make_adapter(LogisticRegression(C=0.5).fit(X, y), X, y)


@pytest.fixture(scope="module")
def V(wine_adapter):
    return wine_adapter.train_grads(slice(0, 6)).T


def _dense_H(adapter):
    return adapter.hessian_matrix()


def test_ggn_equals_exact_for_linear_models(wine_adapter, V):
    exact = ExactCurvature().fit(wine_adapter, damping=1e-3).solve(V)
    assert_allclose(GGNCurvature().fit(wine_adapter, damping=1e-3).solve(V), exact)
    cg = CGCurvature(rtol=1e-12, operator="ggn").fit(wine_adapter, damping=1e-3)
    assert_allclose(cg.solve(V), exact, rtol=1e-6)


def test_diagonal_solves_diag_system(wine_adapter, V):
    d = np.diag(_dense_H(wine_adapter))
    got = DiagonalCurvature().fit(wine_adapter, damping=0.1).solve(V)
    assert_allclose(got, V / (d + 0.1)[:, None], rtol=1e-10)


def test_hutchinson_diagonal_estimate(wine_adapter):
    class NoClosedForm:  # the adapter without its closed-form diagonal
        def __init__(self, a):
            self.n_params, self.hessian_operator = a.n_params, a.hessian_operator

    est = hessian_diagonal(NoClosedForm(wine_adapter), random_state=0)
    true = np.diag(_dense_H(wine_adapter))
    assert np.corrcoef(est, true)[0, 1] > 0.9


def test_ef_solves_outer_product_system(wine_adapter, V):
    a = wine_adapter
    G = a.train_grads()
    N = a.null_basis
    F = G.T @ G / a.n_train + np.diag(a.penalty) + N @ N.T + 0.05 * np.eye(a.n_params)
    got = EFCurvature().fit(a, damping=0.05).solve(V)
    assert_allclose(got, np.linalg.solve(F, V), rtol=1e-8)


def test_ef_woodbury_when_more_params_than_points(digits):
    X, _, y, _ = digits
    a = make_adapter(LogisticRegression(C=0.1).fit(X[:60], y[:60]), X[:60], y[:60])
    assert a.n_params > a.n_train
    ef = EFCurvature().fit(a, damping=0.05)
    assert ef.method_ == "woodbury"
    G, N = a.train_grads(), a.null_basis
    F = G.T @ G / a.n_train + np.diag(a.penalty) + N @ N.T + 0.05 * np.eye(a.n_params)
    V = G[:4].T
    assert_allclose(ef.solve(V), np.linalg.solve(F, V), rtol=1e-7, atol=1e-12)


def test_lowrank_solves_truncated_system(wine_adapter, V):
    w, Q = np.linalg.eigh(_dense_H(wine_adapter))
    w, Q = w[-8:], Q[:, -8:]
    lr = LowRankCurvature(rank=8, random_state=0).fit(wine_adapter, damping=0.1)
    assert_allclose(lr.eigenvalues_, w, rtol=1e-6)
    expected = Q @ np.diag(1 / (w + 0.1)) @ Q.T @ V + (V - Q @ Q.T @ V) / 0.1
    assert_allclose(lr.solve(V), expected, rtol=1e-5, atol=1e-8)
    full = LowRankCurvature(rank=wine_adapter.n_params).fit(wine_adapter, damping=0.1)
    exact = ExactCurvature().fit(wine_adapter, damping=0.1)
    assert_allclose(full.solve(V), exact.solve(V), rtol=1e-8)


def test_lissa_converges_to_exact(wine_adapter, V):
    exact = ExactCurvature().fit(wine_adapter, damping=1e-2).solve(V)
    got = LiSSACurvature(depth=3000, random_state=0).fit(wine_adapter, damping=1e-2)
    r = [np.corrcoef(g, e)[0, 1] for g, e in zip(got.solve(V).T, exact.T, strict=True)]
    assert min(r) > 0.99


def test_identity(wine_adapter, V):
    assert_allclose(IdentityCurvature().fit(wine_adapter, damping=1.0).solve(V), V / 2)


@pytest.mark.parametrize(
    "backend, scale",
    [(ExactCurvature(), 1e-3), (EFCurvature(), 0.1), (DiagonalCurvature(), 1e-3)],
)
def test_auto_damping_is_a_fraction_of_mean_eigenvalue(wine_adapter, backend, scale):
    fitted = backend.fit(wine_adapter, damping="auto")
    assert fitted.damping_ == pytest.approx(scale * fitted.mean_eigenvalue_)
    if isinstance(backend, ExactCurvature):
        trace = np.trace(_dense_H(wine_adapter)) / wine_adapter.n_params
        assert fitted.mean_eigenvalue_ == pytest.approx(trace)


def test_blog_ranking_against_loo_on_digits(digits):
    # "Influence Functions and the Hessian Estimation": direct ~= CG >> LiSSA >
    # outer product > diagonal, against actual LOO on digits softmax regression.
    Xtr, Xte, ytr, yte = digits
    n = len(ytr)
    est = LogisticRegression(C=1 / (0.01 * n), tol=1e-10, max_iter=5000)
    base = InfluenceScorer(est).fit(Xtr, ytr)
    j = np.flatnonzero(base.predict(Xte) != yte)[0]
    q = slice(j, j + 1)
    S = base.influence(Xte[q], yte[q])[0]
    idx = np.argsort(-np.abs(S))[:60]
    actual = loo_change(base, Xte[q], yte[q], idx)[0]
    r = {}
    for name, damping in [
        ("exact", 0.0),
        ("cg", 0.0),
        ("lissa", 0.0),
        ("ef", "auto"),
        ("diagonal", 0.0),
    ]:
        scorer = InfluenceScorer(est, curvature=name, damping=damping, random_state=0)
        pred = scorer.fit(Xtr, ytr).influence(Xte[q], yte[q])[0][idx] / n
        r[name] = loo_correlation(pred, actual)
    assert r["exact"] > 0.99 and abs(r["cg"] - r["exact"]) < 1e-6
    assert r["exact"] > r["lissa"] > r["ef"] > r["diagonal"], r
    assert r["lissa"] > 0.98
