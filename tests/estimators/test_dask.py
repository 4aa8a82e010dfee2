"""DaskInfluenceScorer on a LocalCluster (processes) equals the in-memory scorer.

The reference is ``InfluenceScorer(curvature="exact")`` on the same numpy
data: the dense Hessian of the whole set, factored once.  The cluster path
builds it from row blocks whose adapters know only their rows, so equality
checks that every quantity the objective takes from the whole set (``n``,
class counts, the total sample weight) reaches the blocks.
"""

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import (
    HuberRegressor,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
    SGDRegressor,
)
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import DaskInfluenceScorer, InfluenceScorer
from skinfluence.exceptions import NotAtOptimumWarning

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

RTOL = 1e-10


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        # workers import the library once here, not inside the first test
        c.run(__import__, "skinfluence.estimators")
        yield c


def _data(kind, n=240, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    z = X @ rng.standard_normal(d)
    if kind == "binary":
        y = (z + rng.standard_normal(n) > 0).astype(int)
    elif kind == "multiclass":
        y = np.digitize(z + rng.standard_normal(n), [-0.5, 0.7])
    elif kind == "count":
        y = rng.poisson(np.exp(0.3 * z))
    else:
        y = z + rng.standard_normal(n)
    return X, y, rng.uniform(0.2, 3.0, n)


def _close(actual, expected):
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale)


def _compare(model, X, y, sw=None, *, chunks=60, y_chunks=None, **params):
    """Fit both scorers on the same data; compare every score they give."""
    frozen = FrozenEstimator(model)
    Xd = da.from_array(X, chunks=(chunks, X.shape[1]))
    yd = y if y_chunks is None else da.from_array(y, chunks=y_chunks)
    scorer = DaskInfluenceScorer(frozen, **params).fit(Xd, yd, sample_weight=sw)
    local = InfluenceScorer(frozen, curvature="exact", **params)
    local.fit(X, y, sample_weight=sw)
    s = scorer.self_influence()
    assert isinstance(s, da.Array) and s.chunks == Xd.chunks[:1]
    _close(s.compute(), local.self_influence_)
    Xq, yq = X[:5] + 0.1, y[:5]
    S = scorer.influence(Xq, yq)
    assert isinstance(S, da.Array) and S.chunks[1] == Xd.chunks[0]
    _close(S.compute(), local.influence(Xq, yq))
    _close(
        scorer.influence(Xq, target="prediction").compute(),
        local.influence(Xq, target="prediction"),
    )
    assert scorer.train_gradient_ == local.train_gradient_
    assert scorer.n_train_ == len(X) and scorer.n_params_ == local.adapter_.n_params
    assert scorer.grad_norm_ == pytest.approx(local.grad_norm_, rel=1e-6, abs=1e-12)
    return scorer, local


@pytest.mark.parametrize(
    "model, kind, weighted",
    [
        (LogisticRegression(C=0.5, tol=1e-12), "binary", False),
        (LogisticRegression(C=2.0, tol=1e-12, max_iter=1000), "multiclass", True),
        (Ridge(alpha=3.0), "real", True),
        (PoissonRegressor(alpha=0.1, tol=1e-12), "count", True),
    ],
    ids=["logistic-binary", "logistic-multinomial-weighted", "ridge", "poisson"],
)
def test_equals_in_memory(client, model, kind, weighted):
    X, y, sw = _data(kind)
    sw = sw if weighted else None
    model.fit(X, y, sample_weight=sw)
    # uneven row blocks, y given as a Dask array with other chunks
    _compare(model, X, y, sw, chunks=70, y_chunks=50)


@pytest.mark.filterwarnings("error::skinfluence.exceptions.NotAtOptimumWarning")
def test_balanced_class_weight_and_total_gradient(client):
    # class counts of the whole set, not of each block (the first blocks hold
    # one class only); at the optimum of the objective with those weights
    X, y, sw = _data("multiclass", n=300)
    y[:200] = 0
    model = LogisticRegression(class_weight="balanced", tol=1e-12, max_iter=1000)
    model.fit(X, y)
    scorer, _ = _compare(model, X, y, chunks=45, train_gradient="total")
    assert scorer.estimator_.estimator.class_weight != "balanced"
    assert model.class_weight == "balanced"  # the user's model untouched
    with pytest.raises(ValueError, match="explicit"):
        DaskInfluenceScorer(FrozenEstimator(model)).fit(
            da.from_array(X, chunks=100), y, sample_weight=sw
        )


def test_auto_damping_pipeline_and_column_chunks(client):
    X, y, _ = _data("binary")
    model = make_pipeline(StandardScaler(), LogisticRegression(tol=1e-12)).fit(X, y)
    scorer, local = _compare(model, X, y, damping="auto")
    assert scorer.damping_ == pytest.approx(local.curvature_.damping_, rel=1e-12)
    # features chunked too: brought to one block per row block, same answer
    Xd = da.from_array(X, chunks=(50, 2))
    again = DaskInfluenceScorer(FrozenEstimator(model), damping="auto").fit(Xd, y)
    _close(again.self_influence().compute(), local.self_influence_)


def test_zarr_store(client, tmp_path):
    pytest.importorskip("zarr")
    X, y, _ = _data("real", n=200)
    da.to_zarr(da.from_array(X, chunks=(64, 4)), str(tmp_path / "X.zarr"))
    da.to_zarr(da.from_array(y, chunks=64), str(tmp_path / "y.zarr"))
    Xz, yz = (
        da.from_zarr(str(tmp_path / "X.zarr")),
        da.from_zarr(str(tmp_path / "y.zarr")),
    )
    model = Ridge(alpha=1.0).fit(X, y)
    scorer = DaskInfluenceScorer(FrozenEstimator(model)).fit(Xz, yz)
    local = InfluenceScorer(FrozenEstimator(model), curvature="exact").fit(X, y)
    s = scorer.self_influence()
    _close(s.compute(), local.self_influence_)
    # reduced on the cluster: only the top rows come back
    top = da.argtopk(s, 5).compute()
    np.testing.assert_array_equal(
        np.sort(top), np.sort(np.argsort(local.self_influence_)[-5:])
    )
    _close(scorer.influence(X[:3], y[:3]).compute(), local.influence(X[:3], y[:3]))


def test_not_at_optimum_warns_like_in_memory(client):
    X, y, _ = _data("binary")
    model = LogisticRegression(max_iter=2, tol=1e-12)
    with pytest.warns(Warning):  # sklearn's ConvergenceWarning
        model.fit(X, y)
    with pytest.warns(NotAtOptimumWarning):
        scorer = DaskInfluenceScorer(FrozenEstimator(model)).fit(
            da.from_array(X, chunks=80), y
        )
    with pytest.warns(NotAtOptimumWarning):
        local = InfluenceScorer(FrozenEstimator(model), curvature="exact").fit(X, y)
    assert scorer.grad_norm_ == pytest.approx(local.grad_norm_, rel=1e-10)


def test_refusals(client):
    X, y, sw = _data("binary", n=120)
    Xd = da.from_array(X, chunks=40)
    model = LogisticRegression().fit(X, y)
    frozen = FrozenEstimator(model)
    with pytest.raises(TypeError, match="FrozenEstimator"):
        DaskInfluenceScorer(LogisticRegression()).fit(Xd, y)
    with pytest.raises(ValueError, match="not fitted"):
        DaskInfluenceScorer(FrozenEstimator(LogisticRegression())).fit(Xd, y)
    with pytest.raises(TypeError, match="dask.array"):
        DaskInfluenceScorer(frozen).fit(X, y)
    with pytest.raises(ValueError, match="rows"):
        DaskInfluenceScorer(frozen).fit(Xd, y[:-1])
    with pytest.raises(ValueError, match="rows"):
        DaskInfluenceScorer(frozen).fit(Xd, da.from_array(y[:-1], chunks=40))
    unknown = da.from_array(X, chunks=40)[da.from_array(y >= 0, chunks=40)]
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        DaskInfluenceScorer(frozen).fit(unknown, y)
    with pytest.raises(ValueError, match="non-negative"):
        DaskInfluenceScorer(frozen).fit(Xd, y, sample_weight=-sw)
    with pytest.raises(ValueError, match="memory_budget"):
        DaskInfluenceScorer(frozen, memory_budget=8).fit(Xd, y)
    huber = HuberRegressor().fit(X, y.astype(float))
    with pytest.raises(TypeError, match="Supported: LinearRegression"):
        DaskInfluenceScorer(FrozenEstimator(huber)).fit(Xd, y.astype(float))
    net = MLPClassifier(hidden_layer_sizes=(3,), max_iter=5).fit(X, y)
    with pytest.raises(TypeError, match="Supported: LinearRegression"):
        DaskInfluenceScorer(FrozenEstimator(net)).fit(Xd, y)
    scorer = DaskInfluenceScorer(frozen).fit(Xd, y)
    with pytest.raises(ValueError, match="target"):
        scorer.influence(X[:2], y[:2], target="parameters")
    with pytest.raises(ValueError, match="needs y"):
        scorer.influence(X[:2])
    with pytest.raises(ValueError, match="shape"):
        scorer.influence(X[:2, :2], y[:2])


def test_sgd_mean_scale_penalty(client):
    # SGD: the penalty is on the mean scale (no n), removal is "total"
    X, y, _ = _data("real")
    model = SGDRegressor(alpha=0.01, max_iter=5000, tol=None, random_state=0)
    model.fit(X, y)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotAtOptimumWarning)  # SGD stops near it
        _compare(model, X, y, chunks=100)


@pytest.mark.parametrize(
    "model, kind",
    [
        (LogisticRegression(C=0.5), "binary"),
        (Ridge(alpha=3.0), "real"),
        (PoissonRegressor(alpha=0.1), "count"),
    ],
    ids=["logistic", "ridge", "poisson"],
)
def test_block_adapters_carry_the_whole_objective(model, kind):
    # no cluster: adapters on row blocks with n_objective=n against the
    # adapter on every row
    from skinfluence.models import make_adapter

    X, y, sw = _data(kind, n=90)
    model.fit(X, y, sample_weight=sw)
    whole = make_adapter(model, X, y, sample_weight=sw)
    blocks = [slice(0, 20), slice(20, 65), slice(65, 90)]
    parts = [
        make_adapter(model, X[b], y[b], sample_weight=sw[b], n_objective=90)
        for b in blocks
    ]
    H = sum(a.data_hessian_sum() for a in parts)
    _close(H, whole.data_hessian_sum())
    for a, b in zip(parts, blocks, strict=True):
        # the total gradient (loss + the row's penalty share) is the whole's,
        # also for a GLM, whose penalty scales with the total sample weight
        _close(a.train_grads(total=True), whole.train_grads(b, total=True))
        if kind != "count":
            _close(a.penalty, whole.penalty)
    unweighted = make_adapter(model, X[:20], y[:20], n_objective=90)
    assert np.allclose(unweighted.penalty, make_adapter(model, X, y).penalty)


def test_singular_curvature_multioutput_and_string_labels(client):
    from sklearn.linear_model import LinearRegression

    X, y, _ = _data("real", n=150)
    # a constant-zero feature and no penalty: H is exactly singular, both use
    # the eigen pseudo-inverse with the same cut-off
    Xs = np.hstack([X, np.zeros((len(X), 1))])
    Y = np.column_stack([y, X[:, 1] - y])  # two targets
    model = LinearRegression().fit(Xs, Y)
    with pytest.warns(UserWarning, match="not positive definite"):
        scorer = DaskInfluenceScorer(FrozenEstimator(model)).fit(
            da.from_array(Xs, chunks=40), da.from_array(Y, chunks=(50, 1))
        )
    with pytest.warns(UserWarning, match="not positive definite"):
        local = InfluenceScorer(FrozenEstimator(model), curvature="exact").fit(Xs, Y)
    assert scorer.factorization_ == "eigen"
    _close(scorer.self_influence().compute(), local.self_influence_)
    _close(scorer.influence(Xs[:3], Y[:3]).compute(), local.influence(Xs[:3], Y[:3]))

    labels = np.where(_data("binary", n=150)[1] == 1, "spam", "ham")
    clf = LogisticRegression(tol=1e-12).fit(X, labels)
    scorer = DaskInfluenceScorer(FrozenEstimator(clf)).fit(
        da.from_array(X, chunks=40), labels
    )
    local = InfluenceScorer(FrozenEstimator(clf), curvature="exact").fit(X, labels)
    assert list(scorer.classes_) == ["ham", "spam"]
    _close(scorer.self_influence().compute(), local.self_influence_)
    with pytest.raises(ValueError, match="not seen during fit"):
        DaskInfluenceScorer(FrozenEstimator(clf)).fit(
            da.from_array(X, chunks=40), np.where(labels == "ham", "eggs", labels)
        )


def test_memory_budget_takes_strings_like_the_in_memory_scorer():
    da = pytest.importorskip("dask.array")
    import dask

    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 30))
    y = (X[:, 0] + rng.standard_normal(200) > 0).astype(int)
    model = FrozenEstimator(LogisticRegression(tol=1e-10).fit(X, y))
    Xd, yd = da.from_array(X, chunks=50), da.from_array(y, chunks=50)
    with dask.config.set(scheduler="synchronous"):
        scorer = DaskInfluenceScorer(model, memory_budget="1MB").fit(Xd, yd)
        assert scorer.memory_budget_ == 1_000_000
        with pytest.raises(ValueError, match="memory_budget"):
            DaskInfluenceScorer(model, memory_budget="5kB").fit(Xd, yd)


def test_a_budget_over_the_default_reaches_the_workers(monkeypatch):
    # the client accepts a budget above the library default; the workers'
    # own dense checks must read it too (not refuse with the default)
    da = pytest.importorskip("dask.array")
    import dask

    from skinfluence import _constants

    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 30))
    y = (X[:, 0] + rng.standard_normal(200) > 0).astype(int)
    model = FrozenEstimator(LogisticRegression(tol=1e-10).fit(X, y))
    monkeypatch.setattr(_constants, "DENSE_MEMORY_BUDGET_BYTES", 8 * 31 * 31 - 8)
    Xd, yd = da.from_array(X, chunks=50), da.from_array(y, chunks=50)
    with dask.config.set(scheduler="synchronous"):
        scorer = DaskInfluenceScorer(model, memory_budget=10 * 8 * 31 * 31)
        s = scorer.fit(Xd, yd).self_influence().compute()
    local = InfluenceScorer(model, curvature="exact", memory_budget=10 * 8 * 31 * 31)
    np.testing.assert_allclose(s, local.fit(X, y).self_influence_, rtol=1e-10)
