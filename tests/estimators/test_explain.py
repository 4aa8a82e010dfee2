"""InfluenceScorer.explain: the streamed top-k equals the full matrix's, the
sign of "helpful" is checked against actual refits, memory stays bounded."""

import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification
from sklearn.linear_model import LogisticRegression, Ridge

from skinfluence import InfluenceScorer
from skinfluence.evaluation import loo_change


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(n_class=3, return_X_y=True)
    X = X / 16.0
    lr = LogisticRegression(C=1.0, tol=1e-10, max_iter=5000)
    scorer = InfluenceScorer(lr, curvature="exact").fit(X[:240], y[:240])
    return scorer, X[:240], y[:240], X[240:252], y[240:252]


def _full_topk(S, k):
    order = np.argsort(-S, axis=1, kind="stable")
    return order[:, :k], order[:, ::-1][:, :k]


@pytest.mark.parametrize("target", ["loss", "prediction"])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"batch_size": 7},
        {"memory_budget": 320_000},
        {"n_jobs": 2},
        {"train_gradient": "total", "batch_size": 50},
    ],
)
def test_streamed_topk_equals_the_full_matrix(digits, target, params):
    scorer, X, y, Xq, yq = digits
    scorer = clone(scorer).set_params(**params).fit(X, y)
    S = scorer.influence(Xq, yq, target=target)
    support = S if target == "loss" else -S
    why = scorer.explain(Xq, yq, k=6, target=target)
    assert why.target == target
    for key in ("helpful_indices", "helpful_scores", "harmful_indices"):
        assert why[key].shape == (len(Xq), 6)
    top, bottom = _full_topk(support, 6)
    assert_array_equal(why.helpful_indices, top)
    assert_array_equal(why.harmful_indices, bottom)
    assert_allclose(why.helpful_scores, np.take_along_axis(support, top, 1))
    assert_allclose(why.harmful_scores, np.take_along_axis(support, bottom, 1))
    assert (np.diff(why.helpful_scores, axis=1) <= 0).all()
    assert (np.diff(why.harmful_scores, axis=1) >= 0).all()


def test_helpful_means_the_same_for_both_targets_by_refit(digits):
    """Removing the top helpful row raises the query's loss (target="loss")
    and lowers the log-probability of the predicted class
    (target="prediction"); the top harmful row does the opposite."""
    scorer, X, y, Xq, yq = digits
    # the least confident query: the largest effects
    j = int(np.argmin(scorer.predict_proba(Xq).max(axis=1)))
    q, yj = Xq[[j]], yq[[j]]
    for target, sign in (("loss", 1.0), ("prediction", -1.0)):
        why = scorer.explain(q, yj if target == "loss" else None, k=2, target=target)
        rows = [why.helpful_indices[0, 0], why.harmful_indices[0, 0]]
        actual = loo_change(scorer, q, yj, rows, target=target)[0]
        assert sign * actual[0] > 0 and sign * actual[1] < 0
        # and the scores are the support on the scale of a refit, n * change
        # (first order: within a factor of two on these large effects)
        ratio = [why.helpful_scores[0, 0], why.harmful_scores[0, 0]] / (
            sign * actual * scorer.n_train_
        )
        assert ((ratio > 0.5) & (ratio < 2.0)).all(), ratio
    # a helpful row for the label "loss" of a correctly predicted query has
    # the query's label
    good = scorer.predict(Xq) == yq
    why = scorer.explain(Xq[good], yq[good], k=1)
    assert (y[why.helpful_indices[:, 0]] == yq[good]).mean() >= 0.9


def test_memory_is_bounded_by_k_and_one_block():
    """50 queries x 40,000 rows: the full matrix is 16 MB; explain under a
    1 MB budget allocates a small fraction of it."""
    X, y = make_classification(n_samples=40_000, n_features=5, random_state=0)
    lr = LogisticRegression(tol=1e-10)
    scorer = InfluenceScorer(lr, memory_budget="1MB").fit(X, y)
    Xq, yq = X[:50] + 0.1, y[:50]
    tracemalloc.start()
    why = scorer.explain(Xq, yq, k=3)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4e6, peak  # the matrix: 50 * 40,000 * 8 = 16e6 bytes
    S = scorer.influence(Xq[:5], yq[:5])
    assert_array_equal(why.helpful_indices[:5], _full_topk(S, 3)[0])


def test_sparse_features_equal_the_full_matrix():
    sp = pytest.importorskip("scipy.sparse")
    X, y = make_classification(n_samples=200, n_features=30, random_state=1)
    X[np.abs(X) < 1.0] = 0.0
    Xs = sp.csr_matrix(X)
    lr = LogisticRegression(tol=1e-10, max_iter=5000)
    scorer = InfluenceScorer(lr, batch_size=16).fit(Xs, y)
    S = scorer.influence(Xs[:4], y[:4])
    why = scorer.explain(Xs[:4], y[:4], k=5)
    top, bottom = _full_topk(S, 5)
    assert_array_equal(why.helpful_indices, top)
    assert_array_equal(why.harmful_indices, bottom)


def test_regressor_and_dataframe_rows():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(60, 3)), index=np.arange(60) * 10 + 7)
    y = X.to_numpy() @ [1.0, -2.0, 0.5] + rng.normal(size=60)
    scorer = InfluenceScorer(Ridge(alpha=1.0)).fit(X, y)
    why = scorer.explain(X.iloc[:2], y[:2], k=60)
    # positions, usable with iloc: every row once, ordered by the scores
    assert sorted(why.helpful_indices[0]) == list(range(60))
    S = scorer.influence(X.iloc[:2], y[:2])
    assert_allclose(why.helpful_scores, -np.sort(-S, axis=1))


def test_refusals(digits):
    scorer, X, y, Xq, yq = digits
    with pytest.raises(ValueError, match="k must be an integer between 1 and"):
        scorer.explain(Xq, yq, k=0)
    with pytest.raises(ValueError, match="k must be"):
        scorer.explain(Xq, yq, k=len(X) + 1)
    with pytest.raises(ValueError, match="needs y"):
        scorer.explain(Xq, None)
    with pytest.raises(ValueError, match="target must be"):
        scorer.explain(Xq, yq, target="margin")
    with pytest.raises(ValueError, match="features"):
        scorer.explain(Xq[:, :5], yq)


@pytest.mark.filterwarnings("ignore::skinfluence.exceptions.NotAtOptimumWarning")
def test_skorch_held_out_rows_never_appear(wine):
    torch = pytest.importorskip("torch")
    skorch = pytest.importorskip("skorch")
    from sklearn.frozen import FrozenEstimator

    X, _, y, _ = wine
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    torch.manual_seed(0)
    net = skorch.NeuralNetClassifier(
        torch.nn.Linear(13, 3),
        criterion=torch.nn.CrossEntropyLoss,
        max_epochs=5,
        lr=0.1,
        verbose=0,
    ).fit(X, y)
    scorer = InfluenceScorer(FrozenEstimator(net), damping=1e-3).fit(X, y)
    held_out = np.setdiff1d(np.arange(len(X)), scorer.train_indices_)
    assert len(held_out) > 0
    n = len(scorer.train_indices_)
    why = scorer.explain(X[:4], y[:4], k=n)
    for side in (why.helpful_indices, why.harmful_indices):
        assert not np.isin(side, held_out).any()
        assert_array_equal(
            np.sort(side, axis=1), np.tile(scorer.train_indices_, (4, 1))
        )
    S = scorer.influence(X[:4], y[:4])
    assert_allclose(
        why.helpful_scores, np.take_along_axis(S, why.helpful_indices, 1), rtol=1e-6
    )
    with pytest.raises(ValueError, match="k must be"):
        scorer.explain(X[:4], y[:4], k=n + 1)


def test_explain_blocks_do_not_depend_on_n_jobs():
    # as in pairwise_influence: blocks sized from the whole budget, so a large
    # n_jobs neither changes the numbers nor refuses a budget nobody set
    rng = np.random.default_rng(0)
    X = rng.standard_normal((7000, 3))
    y = rng.integers(0, 5, 7000)
    model = LogisticRegression(tol=1e-8).fit(X, y)
    ref = InfluenceScorer(model, curvature="cg").fit(X, y).explain(X[:2], y[:2])
    many = InfluenceScorer(model, curvature="cg", n_jobs=512).fit(X, y)
    got = many.explain(X[:2], y[:2])
    for key in ("helpful_indices", "helpful_scores", "harmful_indices"):
        np.testing.assert_array_equal(got[key], ref[key])
