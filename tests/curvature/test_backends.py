"""Curvature backends against dense numpy solves."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression

from skinfluence.curvature import CGCurvature, ExactCurvature, make_curvature
from skinfluence.curvature._cg import batched_cg
from skinfluence.models import make_adapter


@pytest.fixture(scope="module")
def digits_adapter(digits):
    X, _, y, _ = digits
    est = LogisticRegression(C=0.1, max_iter=2000).fit(X, y)
    return make_adapter(est, X, y)


@pytest.mark.parametrize("damping", [0.0, 1e-2])
def test_exact_matches_numpy_solve(digits_adapter, damping):
    H = digits_adapter.hessian_matrix()
    V = np.random.default_rng(0).standard_normal((len(H), 5))
    got = ExactCurvature().fit(digits_adapter, damping=damping).solve(V)
    assert_allclose(got, np.linalg.solve(H + damping * np.eye(len(H)), V), rtol=1e-8)


@pytest.mark.parametrize("damping", [0.0, 1e-2])
def test_cg_matches_exact_to_tolerance(digits_adapter, damping):
    G = digits_adapter.train_grads(slice(0, 20)).T
    exact = ExactCurvature().fit(digits_adapter, damping=damping).solve(G)
    cg = CGCurvature(rtol=1e-10).fit(digits_adapter, damping=damping)
    got = cg.solve(G)
    # ||x - x*|| <= cond(H) * rtol * ||x*||
    H = digits_adapter.hessian_matrix() + damping * np.eye(digits_adapter.n_params)
    bound = np.linalg.cond(H) * 1e-10
    err = np.linalg.norm(got - exact, axis=0) / np.linalg.norm(exact, axis=0)
    assert np.all(err <= bound)
    assert np.all(err < 1e-6)
    assert 0 < cg.n_iter_ < 2 * digits_adapter.n_params


def test_batched_cg_zero_and_nonfinite_right_hand_sides():
    A = np.diag([1.0, 2.0, 3.0])
    B = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    X, _, ok = batched_cg(lambda V: A @ V, B, 1e-12, 50)
    assert ok.all()
    assert_allclose(X[:, 1], 0.0)
    assert_allclose(X[:, 0], [1.0, 0.5, 1 / 3])
    with pytest.raises(ValueError, match="NaN"):
        batched_cg(lambda V: A @ V, np.full((3, 1), np.nan), 1e-12, 50)


def test_batched_cg_on_random_spd():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((40, 40))
    A = A @ A.T + 0.5 * np.eye(40)
    B = rng.standard_normal((40, 7))
    X, n_iter, ok = batched_cg(lambda V: A @ V, B, 1e-12, 500)
    assert ok.all()
    assert_allclose(X, np.linalg.solve(A, B), rtol=1e-8, atol=1e-10)


def test_cg_warns_when_not_converged(digits_adapter):
    cg = CGCurvature(maxiter=2).fit(digits_adapter)
    with pytest.warns(ConvergenceWarning, match="curvature__maxiter"):
        cg.solve(digits_adapter.train_grads(slice(0, 3)).T)


def test_exact_falls_back_to_pseudo_inverse_with_warning(diabetes):
    X, _, y, _ = diabetes
    Xd = np.hstack([X, np.zeros((len(X), 1))])  # an all-zero column: H singular
    adapter = make_adapter(LinearRegression().fit(Xd, y), Xd, y)
    with pytest.warns(UserWarning, match="not positive definite"):
        backend = ExactCurvature().fit(adapter)
    assert backend.method_ == "eigen"
    G = adapter.train_grads(slice(0, 5)).T  # gradients lie in range(H)
    assert_allclose(
        backend.solve(G), np.linalg.pinv(adapter.hessian_matrix()) @ G, atol=1e-8
    )


def test_solve_checks_shape(digits_adapter):
    backend = ExactCurvature().fit(digits_adapter)
    with pytest.raises(ValueError, match="must have shape"):
        backend.solve(np.ones((3, 2)))
    v = digits_adapter.train_grads(slice(0, 1))[0]
    assert_allclose(backend.solve(v), backend.solve(v[:, None])[:, 0])


def test_inverse_as_linear_operator(digits_adapter):
    backend = ExactCurvature().fit(digits_adapter, damping=0.1)
    v = np.ones(digits_adapter.n_params)
    H = digits_adapter.hessian_matrix() + 0.1 * np.eye(digits_adapter.n_params)
    assert_allclose(H @ (backend.as_linear_operator() @ v), v, rtol=1e-8)


def test_make_curvature(digits_adapter):
    assert isinstance(make_curvature("auto", digits_adapter), ExactCurvature)
    proto = CGCurvature(maxiter=7)
    made = make_curvature(proto, digits_adapter)
    assert made is not proto and made.maxiter == 7
    with pytest.raises(ValueError, match="Unknown curvature"):
        make_curvature("kfac-typo", digits_adapter)


def test_negative_damping_rejected(digits_adapter):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="damping"):
            ExactCurvature().fit(digits_adapter, damping=-1.0)


def test_jacobi_preconditioned_cg_solves_the_same_system_in_fewer_iterations():
    # features on scales 1e-2 .. 1e2 (TF-IDF-like spread): the Hessian's
    # diagonal spans 8 orders of magnitude, which Jacobi removes
    from sklearn.linear_model import LogisticRegression

    from skinfluence.curvature import CGCurvature, ExactCurvature
    from skinfluence.models import make_adapter

    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 20)) * np.logspace(-2, 2, 20)
    y = (X[:, 3] / 1e-1 + rng.standard_normal(400) > 0).astype(int)
    est = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(X, y)
    adapter = make_adapter(est, X, y)
    V = rng.standard_normal((adapter.n_params, 5))
    exact = ExactCurvature().fit(adapter, damping=1e-3).solve(V)
    plain = CGCurvature(rtol=1e-10, maxiter=2000, preconditioner=None)
    plain.fit(adapter, damping=1e-3)
    jacobi = CGCurvature(rtol=1e-10).fit(adapter, damping=1e-3)
    scale = np.abs(exact).max()
    np.testing.assert_allclose(plain.solve(V), exact, atol=1e-6 * scale)
    np.testing.assert_allclose(jacobi.solve(V), exact, atol=1e-6 * scale)
    assert jacobi.n_iter_ < plain.n_iter_ / 2
