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
from scipy import stats
from sklearn.linear_model import (
    LogisticRegression,
    PoissonRegressor,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
    TweedieRegressor,
)

from skinfluence.curvature import (
    CGCurvature,
    DiagonalCurvature,
    ExactCurvature,
    KFACCurvature,
)
from skinfluence.influence._sketch import sketched_self_influence
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
    backend = CGCurvature().fit(a, damping=1e-3)
    with pytest.raises(ValueError, match="negative curvature"):
        sketched_self_influence(a, backend, n_probes=4, random_state=0)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_sampler_refuses_a_bad_probe_count(bad):
    a = _adapter("binary")
    with pytest.raises(ValueError, match="n_probes"):
        a.curvature_sample(bad)


# -- the sketch -----------------------------------------------------------------


def _one_row_per_seed(a, backend, k, total=False):
    """Row ``i`` from the sketch seeded with ``i``: independent estimates."""
    out = np.empty(a.n_train)
    for i in range(a.n_train):
        v, _ = sketched_self_influence(
            a,
            backend,
            n_probes=k,
            random_state=i,
            train_gradient="total" if total else "loss",
        )
        out[i] = v[i]
    return out


@pytest.mark.parametrize(
    ("kind", "damping"), [("binary", 0.0), ("multinomial", 0.05), ("poisson", 0.0)]
)
def test_sketch_is_scaled_chi_square(kind, damping):
    # s_hat / s ~ chi2_k / k exactly, for every row.  With R independent rows
    # the standardised errors t = (s_hat / s - 1) / sqrt(2 / k) have mean 0
    # (standard error 1 / sqrt(R)) and variance 1 (standard error of the
    # sample variance sqrt((2 + 12 / k) / R), from chi2's excess kurtosis);
    # a 10 % scale error moves the mean by 0.1 / sqrt(2 / k) = 0.28, over 8
    # standard errors.  The full law is checked by Kolmogorov-Smirnov.
    a = _adapter(kind, n=400)
    k = 16
    backend = ExactCurvature().fit(a, damping=damping)
    s = _exact(a, damping)
    ratio = _one_row_per_seed(a, backend, k) / s
    R = len(ratio)
    t = (ratio - 1) / np.sqrt(2 / k)
    assert abs(t.mean()) < 3 / np.sqrt(R)
    assert abs(t.var(ddof=1) - 1) < 4 * np.sqrt((2 + 12 / k) / R)
    assert stats.kstest(ratio * k, stats.chi2(k).cdf).pvalue > 1e-3
    _, rel_se = sketched_self_influence(a, backend, n_probes=k, random_state=0)
    assert rel_se == pytest.approx(np.sqrt(2 / k))


def test_sketch_of_the_total_gradient_is_unbiased():
    # E[(g^T y)(g~^T y)] = s_gt, Var = (s_gt^2 + s_gg s_tt) / k per row.
    a = _adapter("binary", n=300)
    k = 16
    backend = ExactCurvature().fit(a)
    s_gt = _exact(a, total=True)
    H = a.hessian_matrix()
    Gt = a.train_grads(total=True)
    s_tt = np.einsum("ij,ji->i", Gt, np.linalg.solve(H, Gt.T))
    sd = np.sqrt((s_gt**2 + _exact(a) * s_tt) / k)
    t = (_one_row_per_seed(a, backend, k, total=True) - s_gt) / sd
    assert abs(t.mean()) < 3 / np.sqrt(len(t))
    assert 0.7 < t.std() < 1.3
    assert not np.allclose(s_gt, _exact(a), rtol=1e-3)  # the premise: they differ


def test_sketch_converges_to_the_exact_values():
    a = _adapter("multinomial", n=200)
    backend = ExactCurvature().fit(a)
    s = _exact(a)
    v, rel_se = sketched_self_influence(a, backend, n_probes=3000, random_state=0)
    # each ratio ~ chi2_k / k with sd rel_se ~ 0.026: 5 sd bounds every row
    assert np.max(np.abs(v / s - 1)) < 5 * rel_se
    assert np.corrcoef(v, s)[0, 1] > 0.99


def test_sketch_is_seeded():
    a = _adapter("binary")
    backend = ExactCurvature().fit(a, damping=0.01)
    v, _ = sketched_self_influence(a, backend, n_probes=8, random_state=5)
    assert_array_equal(
        v, sketched_self_influence(a, backend, n_probes=8, random_state=5)[0]
    )
    assert not np.allclose(
        v, sketched_self_influence(a, backend, n_probes=8, random_state=6)[0]
    )


@pytest.mark.parametrize("kind", ["binary", "multinomial"])
def test_cg_and_exact_backends_give_the_same_sketch(kind):
    a = _adapter(kind)
    kw = dict(n_probes=20, random_state=1)
    exact = sketched_self_influence(a, ExactCurvature().fit(a, damping=0.01), **kw)[0]
    cg = sketched_self_influence(a, CGCurvature(rtol=1e-10).fit(a, damping=0.01), **kw)[
        0
    ]
    assert_allclose(cg, exact, rtol=1e-7)


def test_row_blocks_and_gradient_products_do_not_change_the_sketch():
    a = _adapter("multinomial")
    backend = ExactCurvature().fit(a)
    kw = dict(n_probes=5, random_state=2, train_gradient="total")
    ref = sketched_self_influence(a, backend, **kw)[0]
    # 5 probes per solve either way; rows in blocks of 7
    assert_allclose(sketched_self_influence(a, backend, batch_size=7, **kw)[0], ref)

    class Products:
        """The adapter with train_grad_products (the GradientProducts path)."""

        calls = 0

        def __getattr__(self, name):
            return getattr(a, name)

        def train_grad_products(self, Q, rows=slice(None), *, total=False):
            Products.calls += 1
            return a.train_grads(rows, total=total) @ Q

    assert_allclose(sketched_self_influence(Products(), backend, **kw)[0], ref)
    assert Products.calls == 2  # one block of rows, loss and total


def test_sketch_refuses_an_adapter_that_cannot_sample():
    a = _adapter("binary")

    class NoSampler:
        def __getattr__(self, name):
            if name == "curvature_sample":
                raise AttributeError(name)
            return getattr(a, name)

    backend = ExactCurvature().fit(a)
    with pytest.raises(TypeError, match="curvature_sample.*exactly"):
        sketched_self_influence(NoSampler(), backend, n_probes=4)


@pytest.mark.filterwarnings("ignore:The L2 penalty is not uniform")
@pytest.mark.parametrize("backend", [DiagonalCurvature(), KFACCurvature()])
def test_sketch_refuses_a_backend_with_another_curvature(backend):
    a = _adapter("multinomial")
    backend.fit(a, damping=0.01)
    with pytest.raises(ValueError, match="another curvature"):
        sketched_self_influence(a, backend, n_probes=4, random_state=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_probes=0), "n_probes"),
        (dict(n_probes=2.0), "n_probes"),
        (dict(n_probes=3, train_gradient="prediction"), "train_gradient"),
        (dict(n_probes=3, batch_size=0), "batch_size"),
    ],
)
def test_sketch_refuses_bad_arguments(kwargs, match):
    a = _adapter("binary")
    with pytest.raises(ValueError, match=match):
        sketched_self_influence(a, ExactCurvature().fit(a), **kwargs)


def test_sketch_needs_a_fitted_backend_of_the_same_size():
    a = _adapter("binary")
    with pytest.raises(ValueError, match="not fitted"):
        sketched_self_influence(a, ExactCurvature(), n_probes=3)
    other = _adapter("multinomial")
    with pytest.raises(ValueError, match="fit the backend to this adapter"):
        sketched_self_influence(a, ExactCurvature().fit(other), n_probes=3)


# ---------------------------------------------------------------------------
# The scorer's self-influence plan: when the sketch is used, and what it says
# ---------------------------------------------------------------------------


def _scorer_data(n=600, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = (X[:, 0] + rng.standard_normal(n) > 0).astype(int)
    return X, y


def _exact_self_influence(X, y):
    from skinfluence import InfluenceScorer

    return (
        InfluenceScorer(LogisticRegression(tol=1e-12), curvature="exact")
        .fit(X, y)
        .self_influence_
    )


def test_scorer_sketches_cg_self_influence_within_its_stated_error():
    from skinfluence import InfluenceScorer

    X, y = _scorer_data(n=1000, d=250)  # p = 251 > 200 probes < n / 2
    exact = _exact_self_influence(X, y)
    scorer = InfluenceScorer(
        LogisticRegression(tol=1e-12), curvature="cg", random_state=0
    ).fit(X, y)
    assert scorer.self_influence_method_ == "sketch"
    values = scorer.self_influence_
    assert scorer.self_influence_error_ == pytest.approx(np.sqrt(2 / 200))
    ratio = values / exact
    # each ratio is chi2_200 / 200: 5 standard errors bound every row, and
    # the median absolute error is 0.674 sqrt(2/k) up to the rows' sharing
    # of probes (checked loosely)
    assert np.all(np.abs(ratio - 1) < 5 * np.sqrt(2 / 200))
    med = np.median(np.abs(ratio - 1)) / (0.674 * np.sqrt(2 / 200))
    assert 0.3 < med < 2.5
    assert stats.spearmanr(values, exact).statistic > 0.95
    # seeded: the same random_state gives the same estimate
    again = InfluenceScorer(
        LogisticRegression(tol=1e-12), curvature="cg", random_state=0
    ).fit(X, y)
    assert_array_equal(again.self_influence_, values)


def test_scorer_without_sketch_solves_each_row_exactly():
    from skinfluence import InfluenceScorer

    X, y = _scorer_data(n=300)
    # p = 5 solves assemble the inverse: exact and the cheapest
    scorer = InfluenceScorer(
        LogisticRegression(tol=1e-12), curvature="cg", sketch_probes=None
    ).fit(X, y)
    assert scorer.self_influence_method_ == "inverse"
    assert_allclose(scorer.self_influence_, _exact_self_influence(X, y), rtol=1e-6)
    assert scorer.self_influence_error_ == 0.0
    # more parameters than rows, too few rows for the sketch: a solve per row
    X, y = _scorer_data(n=300, d=400)
    few = InfluenceScorer(
        LogisticRegression(C=0.1, tol=1e-12), curvature="cg", sketch_probes=200
    ).fit(X, y)
    assert few.self_influence_method_ == "solve"
    exact = (
        InfluenceScorer(LogisticRegression(C=0.1, tol=1e-12), curvature="exact")
        .fit(X, y)
        .self_influence_
    )
    assert_allclose(few.self_influence_, exact, rtol=1e-6)


def test_scorer_falls_back_to_solves_when_the_curvature_cannot_be_sampled():
    from skinfluence import InfluenceScorer

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    y = np.exp(0.2 * X[:, 0]) * rng.gamma(4.0, 0.25, 300)
    est = TweedieRegressor(power=3, link="log", alpha=0.01, tol=1e-12, max_iter=1000)
    kw = {"train_gradient": "loss"}  # "auto" (total) is never sketched
    # p = 4 > 2 probes: the sketch is planned, and cannot sample this model
    scorer = InfluenceScorer(est, curvature="cg", sketch_probes=2, **kw).fit(X, y)
    assert scorer.self_influence_method_ == "sketch"  # the plan, before trying
    values = scorer.self_influence_
    assert scorer.self_influence_method_ == "inverse"  # exact, p = 4 solves
    assert scorer.self_influence_error_ == 0.0
    exact = InfluenceScorer(est, curvature="exact", **kw).fit(X, y).self_influence_
    assert_allclose(values, exact, rtol=1e-6)


def test_auto_curvature_over_the_budget_takes_cg_and_the_sketch():
    from skinfluence import InfluenceScorer

    X, y = _scorer_data(n=600, d=300)
    # 8 p^2 = 0.72 MB for p = 301: over a 0.5 MB budget, so "auto" is CG
    scorer = InfluenceScorer(
        LogisticRegression(C=0.1, tol=1e-10), memory_budget="0.5MB", random_state=0
    ).fit(X, y)
    assert type(scorer.curvature_).__name__ == "CGCurvature"
    assert scorer.self_influence_method_ == "sketch"
    assert scorer.self_influence_.shape == (600,)


def test_sampler_stays_inside_the_memory_budget():
    import tracemalloc

    from skinfluence.utils._chunks import memory_budget_context

    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, 30))
    y = rng.integers(0, 10, 5000)
    adapter = make_adapter(LogisticRegression(max_iter=200).fit(X, y), X, y)
    budget = 1_500_000  # the output Hessians alone (n K^2) take 4 MB
    reference = adapter.curvature_sample(20, random_state=0)
    tracemalloc.start()
    with memory_budget_context(budget):
        Z = adapter.curvature_sample(20, random_state=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.5 * budget
    # the same draws, whatever the blocks
    assert_allclose(Z, reference, rtol=1e-12, atol=1e-12)
