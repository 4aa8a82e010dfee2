"""Sketched self-influence and the curvature sampler behind it.

Ground truths: the curvature ``C`` itself (the sampler's factor ``F`` must
give ``F F^T = C`` exactly, checked by feeding it unit vectors, and against
finite differences of the objective gradient), and exact self-influence from
a dense numpy solve.  The sketch's law is known exactly: ``s_hat / s`` is
``chi2_k / k`` for every row, so the tests check its mean, spread and
distribution on independent draws (each row from its own seed: rows sharing
probes are correlated).
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.linear_model import (
    LogisticRegression,
    PoissonRegressor,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
    TweedieRegressor,
)

from skinfluence.models import CurvatureSampler, make_adapter


def _data(n=120, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X, rng, rng.uniform(0.3, 3.0, n)


def _adapter(kind, n=120, seed=0):
    """A small fitted model of each curvature structure, with sample weights."""
    X, rng, w = _data(n, seed=seed)
    if kind == "binary":  # K = 1, class weights x sample weights
        y = (X[:, 0] + rng.standard_normal(n) > 0).astype(int)
        est = LogisticRegression(class_weight={0: 1.0, 1: 2.5})
    elif kind == "multinomial":  # full K x K blocks; free intercept -> null_basis
        y = rng.integers(0, 3, n)
        est = LogisticRegression()
    elif kind == "multinomial_free":  # C = inf: every column flat
        y = np.argmax(X + rng.standard_normal((n, 3)), axis=1)
        est = LogisticRegression(C=np.inf, max_iter=1000)
    elif kind == "ridge":  # two targets: diagonal K x K blocks
        y = X[:, :2] + rng.standard_normal((n, 2))
        est = Ridge(alpha=2.0)
    elif kind == "poisson":
        y = rng.poisson(np.exp(0.3 + 0.4 * X[:, 0])).astype(float)
        est = PoissonRegressor(alpha=0.05)
    elif kind == "ovr":  # SGD log-loss on 3 classes: one-vs-rest
        y = rng.integers(0, 3, n)
        est = SGDClassifier(loss="log_loss", alpha=0.01, random_state=0)
    elif kind == "ridge_classifier":
        y = rng.integers(0, 3, n)
        est = RidgeClassifier(alpha=1.0)
    else:
        raise ValueError(kind)
    est.fit(X, y, sample_weight=w)
    return make_adapter(est, X, y, sample_weight=w)


KINDS = [
    "binary",
    "multinomial",
    "multinomial_free",
    "ridge",
    "poisson",
    "ovr",
    "ridge_classifier",
]


class _Stream(np.random.RandomState):
    """A 'random' state that hands out a fixed sequence of numbers."""

    def __init__(self, flat):
        super().__init__(0)
        self.flat, self.pos = flat, 0

    def standard_normal(self, size=None):
        k = int(np.prod(size))
        out = self.flat[self.pos : self.pos + k].reshape(size)
        self.pos += k
        return out


def _factor(a):
    """The sampler's factor F (C = F F^T): feed it the unit vectors.

    ``curvature_sample`` documents its draw order: ``e`` of shape
    ``(m, n, K)``, then ``u`` of shape ``(m, p)``, then ``v`` of shape
    ``(m, r)``; probe ``j`` receiving the ``j``-th unit vector of
    ``R^(nK + p + r)`` returns the ``j``-th column of ``F``.
    """
    n, K, p, r = a.n_train, a.n_outputs, a.n_params, a.null_basis.shape[1]
    D = n * K + p + r
    eye = np.eye(D)
    flat = np.concatenate(
        [
            eye[:, : n * K].ravel(),
            eye[:, n * K : n * K + p].ravel(),
            eye[:, n * K + p :].ravel(),
        ]
    )
    rs = _Stream(flat)
    F = a.curvature_sample(D, random_state=rs)
    assert rs.pos == flat.size  # every number consumed: the order is as documented
    return F


def _exact(a, damping=0.0, total=False):
    H = a.hessian_matrix() + damping * np.eye(a.n_params)
    G = a.train_grads()
    Gt = a.train_grads(total=True) if total else G
    return np.einsum("ij,ji->i", G, np.linalg.solve(H, Gt.T))


# -- the sampler ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_sampler_factor_is_the_curvature(kind):
    a = _adapter(kind)
    assert isinstance(a, CurvatureSampler)
    F = _factor(a)
    C = a.hessian_operator().matmat(np.eye(a.n_params))
    assert_allclose(F @ F.T, C, rtol=0, atol=1e-12 * np.abs(C).max())
    if kind.startswith("multinomial"):
        assert a.null_basis.shape[1] > 0  # the projector's part was sampled


def test_sampler_factor_against_finite_differences():
    # Independent of the adapter's Hessian: central differences of its
    # objective gradient (binary, weighted: no flat directions).
    a = _adapter("binary")
    F = _factor(a)
    theta, h = a.params(), 1e-5
    H = np.empty((a.n_params, a.n_params))
    for j in range(a.n_params):
        e = np.zeros(a.n_params)
        e[j] = h
        gp = a.with_params(theta + e).objective_grad()
        gm = a.with_params(theta - e).objective_grad()
        H[:, j] = (gp - gm) / (2 * h)
    assert_allclose(F @ F.T, (H + H.T) / 2, atol=1e-8)


def test_sampler_covariance_of_many_draws():
    # The empirical covariance of N draws: each entry has standard error
    # sqrt((C_aa C_bb + C_ab^2) / N) (Gaussian fourth moments); 78 distinct
    # entries, so 5 standard errors is exceeded with probability < 1e-4.
    a = _adapter("multinomial")
    N = 20_000
    Z = a.curvature_sample(N, random_state=0)
    C = a.hessian_operator().matmat(np.eye(a.n_params))
    emp = Z @ Z.T / N
    d = np.diag(C)
    se = np.sqrt((np.outer(d, d) + C**2) / N)
    assert np.max(np.abs(emp - C) / se) < 5
    assert np.max(np.abs(Z.mean(axis=1)) / np.sqrt(d / N)) < 5


def test_sampler_is_seeded_and_independent_of_its_blocks(monkeypatch):
    a = _adapter("multinomial")
    Z = a.curvature_sample(7, random_state=3)
    assert_array_equal(Z, a.curvature_sample(7, random_state=3))
    assert not np.allclose(Z, a.curvature_sample(7, random_state=4))
    # a memory budget that allows two probes per block draws the same numbers
    monkeypatch.setattr(
        "skinfluence._constants.MEMORY_BUDGET_BYTES", 8 * 2 * 120 * 3 * 2
    )
    assert_allclose(a.curvature_sample(7, random_state=3), Z, rtol=1e-13, atol=1e-13)


def test_sampler_refuses_an_indefinite_hessian():
    # Tweedie power 3 (inverse Gaussian) with the log link: the observed
    # output Hessian mu^-2 (2y - mu) is negative wherever y < mu / 2.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 3))
    mu = np.exp(0.3 + 0.4 * X[:, 0])
    y = rng.gamma(2.0, mu / 2.0)
    est = TweedieRegressor(power=3.0, alpha=0.05, link="log").fit(X, y)
    a = make_adapter(est, X, y)
    assert np.any(y < est.predict(X) / 2)  # the premise
    with pytest.raises(ValueError, match="negative curvature.*exactly"):
        a.curvature_sample(3, random_state=0)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_sampler_refuses_a_bad_probe_count(bad):
    a = _adapter("binary")
    with pytest.raises(ValueError, match="n_probes"):
        a.curvature_sample(bad)
