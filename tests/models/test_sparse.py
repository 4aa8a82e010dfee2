"""Sparse features stay sparse, and give the dense answers.

Ground truth: the same model (the same fitted parameters, frozen) scored on
the dense copy of the data, whose code path forms every gradient and
product densely; the leave-one-out refits (scikit-learn's own solvers on
each matrix) for ``loo_change``; and ``train_grads(...) @ Q`` for the
gradient products.  Memory: the training matrix is never densified
(``toarray``/``todense`` spied on every scipy sparse class).
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import (
    GammaRegressor,
    HuberRegressor,
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
    SGDRegressor,
    TweedieRegressor,
)
from sklearn.pipeline import make_pipeline

from skinfluence import InfluenceScorer
from skinfluence.curvature import CGCurvature
from skinfluence.evaluation import loo_change
from skinfluence.models import GradientProducts, make_adapter

N, D = 60, 25


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(N, D, density=0.25, random_state=seed, format="csr")
    X.data = rng.normal(size=X.nnz)
    eta = X @ rng.normal(size=D)
    return X, eta, rng


def _targets(kind, eta, rng):
    n = len(eta)
    if kind == "real":
        return eta + 0.3 * rng.normal(size=n)
    if kind == "binary":
        return (rng.random(n) < 1 / (1 + np.exp(-2 * eta))).astype(int)
    if kind == "multi":
        return np.digitize(eta + 0.3 * rng.normal(size=n), [-0.4, 0.4])
    mu = np.exp(0.2 + 0.3 * eta)
    if kind == "count":
        return rng.poisson(mu).astype(float)
    if kind == "positive":
        return rng.gamma(2.0, mu / 2.0)
    counts = rng.poisson(mu)  # compound Poisson-gamma, exact zeros
    return np.array([rng.gamma(2.0, 0.6, size=c).sum() for c in counts])


FAMILIES = {
    "linear": (lambda: LinearRegression(), "real"),
    "ridge": (lambda: Ridge(alpha=0.5), "real"),
    "logistic": (lambda: LogisticRegression(C=2.0, tol=1e-12, max_iter=5000), "binary"),
    "multinomial": (
        lambda: LogisticRegression(C=2.0, tol=1e-12, max_iter=5000),
        "multi",
    ),
    "ridge_classifier": (lambda: RidgeClassifier(alpha=0.5), "multi"),
    "sgd_classifier": (
        lambda: SGDClassifier(loss="log_loss", alpha=0.05, random_state=0),
        "binary",
    ),
    "sgd_regressor": (lambda: SGDRegressor(alpha=0.05, random_state=0), "real"),
    "poisson": (
        lambda: PoissonRegressor(alpha=0.05, tol=1e-12, max_iter=5000),
        "count",
    ),
    "gamma": (lambda: GammaRegressor(alpha=0.05, tol=1e-12, max_iter=5000), "positive"),
    "tweedie": (
        lambda: TweedieRegressor(power=1.5, alpha=0.05, tol=1e-12, max_iter=5000),
        "compound",
    ),
    "huber": (lambda: HuberRegressor(alpha=0.05, tol=1e-12, max_iter=5000), "real"),
}


def _fitted(name):
    """A model fitted on the dense data (stochastic solvers: moved to the
    objective's optimum by the adapter's own refit), and its data."""
    make, kind = FAMILIES[name]
    X, eta, rng = _data()
    y = _targets(kind, eta, rng)
    est = make().fit(X.toarray(), y)
    if name.startswith("sgd"):  # polish to the optimum the scores assume
        adapter = make_adapter(est, X.toarray(), y)
        est = adapter.retrain(np.arange(N)).estimator
    return est, X, y


def _scorers(name, curvature):
    est, X, y = _fitted(name)
    out = []
    for Xf in (X.toarray(), X):
        s = InfluenceScorer(FrozenEstimator(est), curvature=curvature, random_state=0)
        out.append(s.fit(Xf, y))
    return out, X, y


def _close(a, b, rtol=1e-10):
    """Equal to ``rtol`` relative to the largest magnitude (values near 0
    are judged on the array's scale)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(np.max(np.abs(a), initial=0.0), 1e-300)
    assert_allclose(a, b, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_sparse_equals_dense_exact(name):
    (dense, sparse_), X, y = _scorers(name, "exact")
    assert sp.issparse(sparse_.adapter_.X_features)
    Xq, yq = X[:7], y[:7]
    _close(dense.influence(Xq.toarray(), yq), sparse_.influence(Xq, yq))
    _close(
        dense.influence(Xq.toarray(), target="prediction"),
        sparse_.influence(Xq, target="prediction"),
    )
    _close(dense.self_influence_, sparse_.self_influence_)
    idx = [0, 5, 11]
    _close(dense.parameter_change(idx), sparse_.parameter_change(idx))
    groups = np.arange(N) % 4
    newton = dense.train_gradient_ == "loss"  # else undefined (refused)
    for method in ("first_order", "newton")[: 1 + newton]:
        _close(
            dense.group_influence(Xq.toarray(), yq, groups, method=method),
            sparse_.group_influence(Xq, yq, groups, method=method),
        )
    if dense.adapter_.is_classifier:
        _close(dense.label_change(Xq.toarray(), yq), sparse_.label_change(Xq, yq))
    dd, ds = dense.diagnostics(), sparse_.diagnostics()
    assert list(dd.columns) == list(ds.columns)
    for col in dd.columns:
        _close(dd[col].to_numpy(), ds[col].to_numpy(), rtol=1e-9)


@pytest.mark.parametrize("name", ["ridge", "logistic", "multinomial", "huber"])
def test_sparse_equals_dense_cg(name):
    """CG on sparse products against the dense exact solve, to CG's tolerance."""
    (dense, _), X, y = _scorers(name, "exact")
    cg = CGCurvature(rtol=1e-13, maxiter=2000)
    (_, sparse_), _, _ = _scorers(name, cg)
    Xq, yq = X[:5], y[:5]
    _close(dense.influence(Xq.toarray(), yq), sparse_.influence(Xq, yq), rtol=1e-9)
    _close(dense.self_influence_, sparse_.self_influence_, rtol=1e-9)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_loo_ground_truth_sparse_equals_dense(name):
    """The refits themselves: scikit-learn on the CSR rows vs the dense rows.

    Each refit is an iterative solve to ``RETRAIN_TOL`` on its own matrix, so
    the two agree to that tolerance rather than to round-off: 1e-9 of the
    largest change for scikit-learn's solvers, 1e-6 for the stochastic models,
    whose ground truth is an L-BFGS minimisation stopped at its gradient
    tolerance (measured: 2e-6).
    """
    (dense, sparse_), X, y = _scorers(name, "exact")
    idx = [0, 3, 8]
    Xq, yq = X[:4], y[:4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = loo_change(dense, Xq.toarray(), yq, idx)
        b = loo_change(sparse_, Xq, yq, idx)
    _close(a, b, rtol=1e-6 if name.startswith("sgd") else 1e-9)
    # and influence predicts them (first order, so to a few percent)
    pred = sparse_.influence(Xq, yq)[:, idx] / N
    assert np.corrcoef(pred.ravel(), b.ravel())[0, 1] > 0.95


@pytest.mark.parametrize("fmt", ["csc", "coo", "csr_array"])
def test_other_sparse_formats(fmt):
    (dense, _), X, y = _scorers("multinomial", "exact")
    est = dense.estimator_.estimator
    Xf = sp.csr_array(X) if fmt == "csr_array" else X.asformat(fmt)
    s = InfluenceScorer(FrozenEstimator(est), curvature="exact").fit(Xf, y)
    assert sp.issparse(s.adapter_.X_features)
    assert s.adapter_.X_features.format == "csr"
    Xq = Xf.tocsr()[:4] if fmt != "coo" else X[:4].tocoo()
    _close(dense.influence(X[:4].toarray(), y[:4]), s.influence(Xq, y[:4]))
    _close(dense.self_influence_, s.self_influence_)


@pytest.mark.parametrize("name", ["logistic", "multinomial", "poisson", "huber"])
@pytest.mark.parametrize("total", [False, True])
def test_train_grad_products(name, total):
    """``train_grad_products(Q) == train_grads() @ Q``, sparse and dense."""
    est, X, y = _fitted(name)
    rng = np.random.default_rng(1)
    for Xf in (X, X.toarray()):
        adapter = make_adapter(est, Xf, y)
        assert isinstance(adapter, GradientProducts)
        Q = rng.normal(size=(adapter.n_params, 3))
        rows = np.array([4, 1, 9, 9])
        for r in (slice(None), rows, slice(10, 20)):
            want = adapter.train_grads(r, total=total) @ Q
            _close(want, adapter.train_grad_products(Q, r, total=total), 1e-12)
        want = adapter.train_grads(rows, total=total) @ Q[:, 0]
        _close(want, adapter.train_grad_products(Q[:, 0], rows, total=total), 1e-12)
    with pytest.raises(ValueError, match="one row per parameter"):
        adapter.train_grad_products(Q[1:])


@pytest.mark.parametrize("name", ["logistic", "multinomial", "huber"])
def test_response_and_minibatch_paths(name):
    """PBRF/proximal responses, minibatch gradients and Hessian products,
    refits and new data: sparse vs dense."""
    est, X, y = _fitted(name)
    a = make_adapter(est, X.toarray(), y)
    b = make_adapter(est, X, y)
    rows = np.arange(10, 30)
    V = np.random.default_rng(2).normal(size=(a.n_params, 2))
    _close(a.hessian_matvec(V, rows), b.hessian_matvec(V, rows))
    _close(a.hessian_diagonal(), b.hessian_diagonal())
    scale = np.abs(a.train_grads()).max()  # the gradient is ~0 at the optimum
    assert_allclose(a.objective_grad(), b.objective_grad(), atol=1e-12 * scale)
    _close(a.data_hessian_sum(rows), b.data_hessian_sum(rows))
    for (Ja, Ma), (Jb, Mb) in [(a.row_curvature(rows), b.row_curvature(rows))]:
        _close(Ja, Jb)
        _close(Ma, Mb)
    if name == "huber":
        return
    theta = a.params() * 1.1
    _close(a.batch_objective_grad(theta, rows), b.batch_objective_grad(theta, rows))
    for kind in ("pbrf", "proximal"):
        ra = a.response(3, damping=0.01, kind=kind)
        rb = b.response(3, damping=0.01, kind=kind)
        _close(ra.params(), rb.params(), 1e-7)
    keep = np.ones(N, bool)
    keep[[2, 7]] = False
    _close(a.retrain(keep).params(), b.retrain(keep).params(), 1e-6)
    wa, wb = a.with_data(X[:30].toarray(), y[:30]), b.with_data(X[:30], y[:30])
    assert sp.issparse(wb.X_features)
    assert_allclose(wa.objective_grad(), wb.objective_grad(), atol=1e-12 * scale)


@pytest.mark.filterwarnings("ignore:The L2 penalty is not uniform")
@pytest.mark.parametrize("curvature", ["kfac", "ekfac"])
def test_kronecker_curvature_on_sparse(curvature):
    (dense, sparse_), X, y = _scorers("multinomial", curvature)
    _close(dense.influence(X[:4].toarray(), y[:4]), sparse_.influence(X[:4], y[:4]))
    _close(dense.self_influence_, sparse_.self_influence_)


def test_input_perturbation_on_sparse():
    est, X, y = _fitted("multinomial")
    Xq, yq = X[:3], y[:3]
    a = InfluenceScorer(FrozenEstimator(est), curvature="exact").fit(X.toarray(), y)
    b = InfluenceScorer(FrozenEstimator(est), curvature="exact").fit(X, y)
    _close(a.input_perturbation(Xq.toarray(), yq), b.input_perturbation(Xq, yq))


@pytest.fixture
def spy_densify(monkeypatch):
    """Record the shape of every ``toarray``/``todense`` call on scipy sparse
    containers (matrices and arrays, every format)."""
    calls = []
    classes = {
        c
        for name in dir(sp)
        if isinstance(c := getattr(sp, name), type)
        and issubclass(c, sp.sparray | sp.spmatrix)
    }
    for cls in classes:
        for meth in ("toarray", "todense"):
            orig = getattr(cls, meth, None)
            if orig is None:
                continue

            def spy(self, *args, _orig=orig, **kwargs):
                calls.append(self.shape)
                return _orig(self, *args, **kwargs)

            monkeypatch.setattr(cls, meth, spy)
    return calls


@pytest.mark.parametrize("name", ["logistic", "multinomial", "ridge", "huber"])
def test_training_matrix_is_never_densified(name, spy_densify):
    rng = np.random.default_rng(3)
    n, d = 200, 600  # blocks of 32 rows: a densified X would show 200 rows
    X = sp.random(n, d, density=0.01, random_state=3, format="csr")
    X.data = rng.normal(size=X.nnz)
    y = _targets(FAMILIES[name][1], X @ rng.normal(size=d), rng)
    # well-conditioned, so the fit and CG are quick (p > n here)
    model = HuberRegressor(alpha=1.0) if name == "huber" else FAMILIES[name][0]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
        s = InfluenceScorer(model, curvature="cg", batch_size=32).fit(X, y)
        S = s.influence(X[:20], y[:20])
        si = s.self_influence_
    assert S.shape == (20, n) and np.all(np.isfinite(S))
    assert si.shape == (n,) and np.all(np.isfinite(si))
    assert sp.issparse(s.adapter_.X_features) and sp.issparse(s.adapter_._Xt)
    assert not [shape for shape in spy_densify if shape[0] > 32], spy_densify


def test_tfidf_text_pipeline():
    """A list of strings -> TfidfVectorizer -> LogisticRegression, end to end:
    the features stay sparse and the scores equal the dense model's."""
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(300)]
    good, bad = vocab[:20], vocab[20:40]
    docs, y = [], []
    for i in range(120):
        label = i % 2
        words = list(rng.choice(vocab[40:], size=rng.integers(5, 15)))
        words += list(rng.choice(good if label else bad, size=rng.integers(1, 4)))
        docs.append(" ".join(words))
        y.append(["neg", "pos"][label])
    y = np.array(y)
    pipe = make_pipeline(TfidfVectorizer(), LogisticRegression(C=5.0, tol=1e-12))
    s = InfluenceScorer(pipe, curvature="cg").fit(docs, y)
    assert sp.issparse(s.adapter_.X_features)
    S = s.influence(docs[:5], y[:5])
    assert S.shape == (5, 120) and np.all(np.isfinite(S))
    assert np.all(np.isfinite(s.self_influence_))
    # the same model on the dense features
    F = s.estimator_[:-1].transform(docs).toarray()
    dense = InfluenceScorer(FrozenEstimator(s.estimator_[-1]), curvature="exact")
    dense.fit(F, y)
    _close(dense.influence(F[:5], y[:5]), S, rtol=1e-7)


def test_data_hessian_refused_over_budget(monkeypatch):
    from skinfluence import _constants

    est, X, y = _fitted("multinomial")
    adapter = make_adapter(est, X, y)
    monkeypatch.setattr(_constants, "DENSE_MEMORY_BUDGET_BYTES", 8 * 10)
    with pytest.raises(ValueError, match="dense memory budget"):
        adapter.data_hessian_sum()


def test_memory_stays_sparse_sized():
    """fit + 10 queries with CG and small blocks (``batch_size``, which also
    sizes the dense activation blocks of the Kronecker statistics): the peak
    traced allocation is far below the dense training matrix (numpy and scipy
    report their buffers to tracemalloc)."""
    import tracemalloc

    rng = np.random.default_rng(5)
    # dense X~: 192 MB; sparse: 0.8 MB; the rest scales with p (CG's blocks
    # of query or check vectors, ~15 MB), not with n p
    n, d = 4000, 6000
    X = sp.random(n, d, density=0.003, random_state=5, format="csr")
    X.data = rng.normal(size=X.nnz)
    y = (X @ rng.normal(size=d) > 0).astype(int)
    model = LogisticRegression(C=10.0).fit(X, y)
    dense_bytes = 8 * n * (d + 1)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = InfluenceScorer(FrozenEstimator(model), curvature="cg", batch_size=50)
            s.fit(X, y)
            S = s.influence(X[:10], y[:10])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.all(np.isfinite(S))
    assert peak < dense_bytes / 8, (peak, dense_bytes)


@pytest.mark.parametrize("name", ["multinomial", "huber"])
def test_given_features_in_any_sparse_format(name):
    """``X_features`` handed to the adapter (as refits do) is held as CSR."""
    est, X, y = _fitted(name)
    adapter = type(make_adapter(est, X, y))(est, None, y, X_features=X.tocoo())
    assert adapter.X_features.format == "csr"
    keep = np.arange(N) != 4
    _close(
        make_adapter(est, X.toarray(), y).retrain(keep).params(),
        adapter.retrain(keep).params(),
        1e-6,
    )


def test_make_loo_scorer_takes_sparse_folds():
    from sklearn.model_selection import cross_val_score

    from skinfluence.evaluation import make_loo_scorer

    rng = np.random.default_rng(0)
    X = sp.random(120, 30, density=0.2, format="csr", random_state=0)
    y = np.asarray(X.sum(axis=1)).ravel() + 0.3 * rng.standard_normal(120) > 3
    y = y.astype(int)
    scorer = make_loo_scorer(n_train_points=5, n_queries=2, random_state=0)
    scores = cross_val_score(
        InfluenceScorer(LogisticRegression(tol=1e-10)), X, y, cv=2, scoring=scorer
    )
    assert np.all(np.isfinite(scores))
