"""Memory budget, blocks sized per backend, self-influence plans, n_jobs.

Ground truth: the dense ``g_i^T (H + damping I)^{-1} g_i`` and ``G_q (H +
damping I)^{-1} G^T`` by ``numpy.linalg.solve`` on the adapter's closed-form
Hessian, and the unlimited (default-budget, sequential) results.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from joblib import parallel_config
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from skinfluence import (
    CleanedClassifier,
    CleanedRegressor,
    InfluenceScorer,
    NoisyLabelDetector,
    Relabeler,
)
from skinfluence.curvature import (
    CGCurvature,
    CurvatureBackend,
    ExactCurvature,
    LowRankCurvature,
    make_curvature,
)
from skinfluence.influence import pairwise_influence, self_influence
from skinfluence.models import GradientProducts, make_adapter
from skinfluence.utils._chunks import parse_memory_budget


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=230, n_features=5, n_informative=4, n_redundant=0,
        n_classes=3, random_state=0,
    )  # fmt: skip
    return X[:200], y[:200], X[200:], y[200:]


@pytest.fixture(scope="module")
def model(data):
    X, y, _, _ = data
    return LogisticRegression(C=1.0, tol=1e-12, max_iter=5000).fit(X, y)


def _dense_truth(model, X, y, Xq, yq, damping=0.0, total=False):
    """Self-influence and pairwise scores from a dense solve (numpy)."""
    ad = make_adapter(model, X, y)
    H = ad.hessian_matrix() + damping * np.eye(ad.n_params)
    G = ad.train_grads(slice(None))
    Gt = ad.train_grads(slice(None), total=True) if total else G
    Z = np.linalg.solve(H, Gt.T)
    return np.einsum("ij,ji->i", G, Z), ad.loss_grads(Xq, yq) @ Z


# -- parsing and parameters ---------------------------------------------------


@pytest.mark.parametrize(
    "value, nbytes",
    [
        (123456, 123456),
        ("2GB", 2 * 10**9),
        ("512MiB", 512 * 2**20),
        ("1.5 gb", 1_500_000_000),
        ("64kib", 64 * 1024),
        ("3e6", 3_000_000),
        (None, None),
    ],
)
def test_parse_memory_budget(value, nbytes):
    assert parse_memory_budget(value) == nbytes


@pytest.mark.parametrize("value", ["2 parsecs", "GB", "-1GB", "", "1..2MB"])
def test_bad_memory_budget_string_refused_at_fit(data, value):
    X, y, _, _ = data
    with pytest.raises(ValueError, match="memory_budget"):
        InfluenceScorer(LogisticRegression(), memory_budget=value).fit(X, y)


@pytest.mark.parametrize("value", [0, -5, 1.5, [1]])
def test_bad_memory_budget_type_refused_at_fit(data, value):
    X, y, _, _ = data
    with pytest.raises(ValueError, match="memory_budget"):
        InfluenceScorer(LogisticRegression(), memory_budget=value).fit(X, y)


def test_params_and_clone():
    s = InfluenceScorer(memory_budget="2GB", n_jobs=2)
    params = clone(s).get_params()
    assert params["memory_budget"] == "2GB" and params["n_jobs"] == 2
    for Est in (NoisyLabelDetector, Relabeler):
        p = clone(Est(memory_budget=10**8, n_jobs=3)).get_params()
        assert p["memory_budget"] == 10**8 and p["n_jobs"] == 3
    for Est in (CleanedClassifier, CleanedRegressor):
        p = clone(Est(memory_budget="1GiB", n_jobs=-1)).get_params()
        assert p["memory_budget"] == "1GiB" and p["n_jobs"] == -1


def test_cleaners_pass_budget_and_jobs_to_their_scorer(data):
    X, y, _, _ = data
    det = NoisyLabelDetector(memory_budget="300MB", n_jobs=2).fit(X, y)
    assert det.scorer_.memory_budget_ == 300 * 10**6 and det.scorer_.n_jobs == 2
    rel = Relabeler(method="label_influence", memory_budget=2**28, n_jobs=2).fit(X, y)
    assert rel.scorer_.memory_budget_ == 2**28 and rel.scorer_.n_jobs == 2
    cc = CleanedClassifier(LogisticRegression(), memory_budget="300MB", n_jobs=2)
    cc.fit(X, y)
    assert cc.cleaner_.scorer_.memory_budget_ == 300 * 10**6
    assert cc.cleaner_.scorer_.n_jobs == 2


def test_fitted_budget_attribute(data):
    X, y, _, _ = data
    assert InfluenceScorer(memory_budget=None).fit(X, y).memory_budget_ is None
    s = InfluenceScorer(memory_budget="1MiB").fit(X, y)
    assert s.memory_budget_ == 2**20


# -- budget-limited blocks equal unlimited -----------------------------------


@pytest.mark.parametrize(
    "curvature, budget, n_query",
    [
        ("exact", 4000, 30),  # several solve and row blocks, queries held
        ("exact", 60000, 500),  # queries not held: gradients cached once
        ("exact", 20000, 500),  # neither held: gradients streamed per block
        ("cg", 40000, 30),
        ("cg", 12000, 100),  # per query block: one CG column each
    ],
)
def test_budget_limited_equals_unlimited(data, model, curvature, budget, n_query):
    X, y, Xq, yq = data
    Xq = np.resize(Xq, (n_query, X.shape[1]))
    yq = np.resize(yq, n_query)
    kw = {"curvature": curvature}
    if curvature == "cg":
        kw["curvature"] = CGCurvature(rtol=1e-12)
    small = InfluenceScorer(model, memory_budget=budget, **kw).fit(X, y)
    free = InfluenceScorer(model, **kw).fit(X, y)
    tol = {"rtol": 1e-12, "atol": 1e-12} if curvature == "exact" else {"rtol": 1e-7}
    assert_allclose(small.influence(Xq, yq), free.influence(Xq, yq), **tol)
    assert_allclose(small.self_influence_, free.self_influence_, **tol)
    truth_self, truth_S = _dense_truth(model, X, y, Xq, yq)
    assert_allclose(small.self_influence_, truth_self, rtol=1e-7)
    assert_allclose(small.influence(Xq, yq), truth_S, rtol=1e-6, atol=1e-9)


def test_dense_refused_before_allocating(data, monkeypatch):
    X, y, _, _ = data
    Xw = np.hstack([X] * 80)  # 400 features, 3 classes: p = 1203
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LogisticRegression(max_iter=50).fit(Xw, y)
    from skinfluence.models import _linear

    def boom(self):
        raise AssertionError("the dense Hessian was built")

    monkeypatch.setattr(_linear.LinearAdapter, "hessian_matrix", boom)
    from sklearn.frozen import FrozenEstimator

    with pytest.raises(ValueError) as info:
        InfluenceScorer(
            FrozenEstimator(clf), curvature="exact", memory_budget="8MB"
        ).fit(Xw, y)
    msg = str(info.value)
    assert "memory_budget" in msg and "7.63 MiB" in msg  # the budget
    assert "11 MiB" in msg  # 8 * 1203^2 bytes needed
    assert "'cg'" in msg  # the backend that fits
    # "auto" takes the matrix-free backend within that budget
    s = InfluenceScorer(FrozenEstimator(clf), memory_budget="8MB")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=50: not at an optimum
        s.fit(Xw, y)
    assert isinstance(s.curvature_, CGCurvature)


def test_one_right_hand_side_over_budget_refused(data, model):
    X, y, Xq, yq = data
    s = InfluenceScorer(model, curvature="cg", memory_budget=2000).fit(X, y)
    with pytest.raises(ValueError, match="memory_budget=2000 bytes.*'exact'"):
        s.influence(Xq, yq)


def test_auto_prefers_exact_while_it_fits():
    class Fake:
        n_params, n_train, n_outputs = 6000, 100, 1

    assert isinstance(make_curvature("auto", Fake()), ExactCurvature)
    small = make_curvature("auto", Fake(), memory_budget=8 * 6000**2 - 1)
    assert isinstance(small, CGCurvature)
    Fake.is_convex = False  # networks keep the dense-GGN cap
    assert isinstance(make_curvature("auto", Fake()), CGCurvature)


def test_backend_without_memory_budget_keyword(data, model):
    class Old(CurvatureBackend):
        def fit(self, adapter, *, damping=0.0, verbose=0):
            return super().fit(adapter, damping=damping, verbose=verbose)

        def _fit(self, adapter):
            self._H = adapter.hessian_matrix()
            self.mean_eigenvalue_ = 1.0

        def _solve(self, V):
            return np.linalg.solve(self._H + self.damping_ * np.eye(len(V)), V)

    X, y, Xq, yq = data
    s = InfluenceScorer(model, curvature=Old(), memory_budget="10MB").fit(X, y)
    assert s.self_influence_method_ == "inverse"  # p solves, fewer than n
    truth_self, truth_S = _dense_truth(model, X, y, Xq, yq)
    assert_allclose(s.self_influence_, truth_self, rtol=1e-9)
    assert_allclose(s.influence(Xq, yq), truth_S, rtol=1e-8, atol=1e-12)


# -- self-influence plans -------------------------------------------------------


@pytest.mark.parametrize(
    "curvature, method",
    [
        ("exact", "factor"),
        ("ggn", "factor"),
        ("blockggn", "factor"),
        ("diagonal", "factor"),
        ("identity", "factor"),
        ("lowrank", "factor"),
        ("kfac", "factor"),  # a linear model's statistics are not per layer
        ("cg", "inverse"),  # p solves < n: the inverse, exactly
        ("ef", "inverse"),
    ],
)
@pytest.mark.parametrize("train_gradient", ["loss", "total"])
def test_self_influence_plan_equals_solve(
    data, model, curvature, method, train_gradient
):
    X, y, _, _ = data
    s = InfluenceScorer(
        model, curvature=curvature, damping=1e-2, train_gradient=train_gradient,
        random_state=0,
    ).fit(X, y)  # fmt: skip
    if curvature == "kfac":
        assert s.self_influence_method_ in ("kronecker", "factor")
    else:
        assert s.self_influence_method_ == method
    fast = s.self_influence_
    assert s.self_influence_error_ == 0.0
    slow = self_influence(
        s.adapter_, s.curvature_, train_gradient=train_gradient, method="solve"
    )
    # CG solves to rtol=1e-8, column by column or row by row
    rtol = 1e-7 if curvature == "cg" else 1e-9
    assert_allclose(fast, slow, rtol=rtol, atol=1e-14)


@pytest.mark.parametrize("train_gradient", ["loss", "total"])
def test_factor_self_influence_matches_dense_truth(data, model, train_gradient):
    X, y, _, _ = data
    s = InfluenceScorer(
        model, curvature="exact", damping=1e-3, train_gradient=train_gradient
    ).fit(X, y)
    truth, _ = _dense_truth(
        model, X, y, X[:1], y[:1], damping=1e-3, total=train_gradient == "total"
    )
    assert s.self_influence_method_ == "factor"
    assert_allclose(s.self_influence_, truth, rtol=1e-9)


def test_factor_self_influence_eigen_fallback():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((6, 4))
    H = B @ B.T  # rank 4 of 6: Cholesky fails, the eigen pseudo-inverse runs

    class Singular:
        n_params, n_train, n_outputs = 6, 10, 1

        def hessian_matrix(self):
            return H.copy()

        def ggn_matrix(self):
            return H.copy()

    with pytest.warns(UserWarning, match="not positive definite"):
        backend = ExactCurvature().fit(Singular())
    assert backend.method_ == "eigen"
    G = rng.standard_normal((6, 9))
    W = backend.half_solve(G)
    assert_allclose(W.T @ W, G.T @ np.linalg.pinv(H) @ G, rtol=1e-8, atol=1e-10)


# -- n_jobs -------------------------------------------------------------------


@pytest.mark.parametrize("curvature", ["exact", "cg"])
def test_n_jobs_equals_sequential(data, model, curvature):
    X, y, Xq, yq = data
    kw = {"curvature": curvature, "batch_size": 16}
    seq = InfluenceScorer(model, **kw).fit(X, y)
    par = InfluenceScorer(model, n_jobs=2, **kw).fit(X, y)
    assert_allclose(par.influence(Xq, yq), seq.influence(Xq, yq), rtol=1e-12)
    assert_allclose(par.self_influence_, seq.self_influence_, rtol=1e-12)
    assert par.grad_norm_ == seq.grad_norm_
    with parallel_config(backend="threading", n_jobs=2):
        cfg = InfluenceScorer(model, **kw).fit(X, y)
        assert_allclose(cfg.influence(Xq, yq), seq.influence(Xq, yq), rtol=1e-12)
        assert_allclose(cfg.self_influence_, seq.self_influence_, rtol=1e-12)


# -- GradientProducts ------------------------------------------------------------


class _Products:
    """A LinearAdapter that multiplies its gradients in itself (counted)."""

    def __init__(self, inner):
        self._inner = inner
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def train_grad_products(self, Q, rows=slice(None), *, total=False):
        self.calls += 1
        return self._inner.train_grads(rows, total=total) @ Q


@pytest.mark.parametrize("total", [False, True])
def test_gradient_products_used(data, model, total):
    X, y, Xq, yq = data
    inner = make_adapter(model, X, y)
    wrapped = _Products(inner)
    assert isinstance(wrapped, GradientProducts)
    backend = ExactCurvature().fit(inner)
    tg = "total" if total else "loss"
    S = pairwise_influence(wrapped, backend, Xq, yq, train_gradient=tg)
    assert wrapped.calls >= 1
    ref = pairwise_influence(inner, backend, Xq, yq, train_gradient=tg)
    assert_allclose(S, ref, rtol=1e-12, atol=1e-15)
    _, truth = _dense_truth(model, X, y, Xq, yq, total=total)
    assert_allclose(S, truth, rtol=1e-8, atol=1e-12)


def test_empirical_fisher_gradients_refused_over_budget(data, model):
    X, y, _, _ = data  # 200 x 18 per-sample gradients: 28,800 bytes
    with pytest.raises(ValueError, match="per-sample gradients.*memory_budget"):
        InfluenceScorer(model, curvature="ef", memory_budget=20000).fit(X, y)


def test_lowrank_basis_refused_over_budget(data, model):
    X, y, _, _ = data  # p = 18, rank 5: 18 x 11 Lanczos vectors, 1,584 bytes
    with pytest.raises(ValueError, match="Lanczos basis.*memory_budget"):
        InfluenceScorer(
            model, curvature=LowRankCurvature(rank=5), memory_budget=1500
        ).fit(X, y)


# -- n_jobs: the same blocks, the same numbers -----------------------------------


@pytest.mark.parametrize("curvature", ["exact", "cg"])
def test_n_jobs_under_a_budget_gives_the_sequential_numbers(data, model, curvature):
    # blocks are sized from the whole budget whatever n_jobs is
    X, y, Xq, yq = data
    runs = [
        InfluenceScorer(
            model, curvature=curvature, memory_budget="200kB", n_jobs=n_jobs
        ).fit(X, y)
        for n_jobs in (None, 2)
    ]
    np.testing.assert_array_equal(runs[0].influence(Xq, yq), runs[1].influence(Xq, yq))
    np.testing.assert_array_equal(runs[0].self_influence_, runs[1].self_influence_)


def test_many_jobs_without_a_budget_are_not_refused():
    # no budget was set: n_jobs must not shrink the default block (256 MiB)
    # into a refusal; one CG right-hand side here takes ~0.6 MB, over
    # 256 MiB / 512
    rng = np.random.default_rng(0)
    X = rng.standard_normal((7000, 3))
    y = rng.integers(0, 5, 7000)
    model = LogisticRegression(tol=1e-8).fit(X, y)
    s = InfluenceScorer(model, curvature="cg", n_jobs=512).fit(X, y)
    ref = InfluenceScorer(model, curvature="cg").fit(X, y)
    np.testing.assert_array_equal(
        s.influence(X[:2], y[:2]), ref.influence(X[:2], y[:2])
    )


def test_lissa_with_a_random_state_instance_is_thread_safe(data, model):
    from skinfluence.curvature import LiSSACurvature

    X, y, Xq, yq = data
    results = []
    for n_jobs in (None, 2, 2):
        s = InfluenceScorer(
            model,
            curvature=LiSSACurvature(depth=50),
            random_state=np.random.RandomState(0),
            batch_size=7,
            damping=0.01,
            n_jobs=n_jobs,
        ).fit(X, y)
        results.append(s.influence(Xq, yq))
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_worker_threads_see_the_callers_budget():
    from skinfluence.utils._chunks import (
        context_budget,
        map_blocks,
        memory_budget_context,
    )

    with memory_budget_context(12345):
        seen = map_blocks(lambda b: context_budget(), [1, 2, 3, 4], n_jobs=2)
    assert seen == [12345] * 4
