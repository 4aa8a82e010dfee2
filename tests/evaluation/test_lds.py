"""Linear datamodelling score against retraining on random subsets.

Ground truths: subset retrains recomputed here without the adapter (sklearn
refit, log-loss by hand), Spearman from scipy, a synthetic linear datamodel
(LDS exactly 1), random scores (LDS near 0), and the exact curvature of a
convex model beating the gradient dot product.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression, Ridge

from skinfluence import InfluenceScorer
from skinfluence.evaluation import (
    LDSGroundTruth,
    lds,
    lds_from_scores,
    lds_ground_truth,
)


def _lr(n, lam=0.1):
    return LogisticRegression(C=1.0 / (lam * n), tol=1e-10, max_iter=5000)


@pytest.fixture(scope="module")
def logistic(breast_cancer):
    Xtr, Xte, ytr, yte = breast_cancer
    Xq, yq = Xte[:20], yte[:20]
    exact = InfluenceScorer(_lr(len(ytr)), curvature="exact").fit(Xtr, ytr)
    truth = lds_ground_truth(exact, Xq, yq, n_subsets=30, random_state=0)
    return exact, truth, Xtr, ytr, Xq, yq


def _truth(masks, losses):
    losses = np.asarray(losses, dtype=float)
    return LDSGroundTruth(
        masks=masks,
        losses=losses,
        seed_losses=losses[None],
        seeds=np.zeros((len(masks), 1), dtype=int),
        alpha=float(masks[0].mean()),
        target="loss",
        warm_start=False,
        n_redraws=0,
    )


def test_exact_curvature_beats_identity_and_random(logistic):
    # Measured: exact 0.964, identity 0.712, random 0.009.
    exact, truth, Xtr, ytr, Xq, yq = logistic
    score = lds_from_scores(exact.influence(Xq, yq), truth)
    ident = InfluenceScorer(_lr(len(ytr)), curvature="identity").fit(Xtr, ytr)
    score_identity = lds_from_scores(ident.influence(Xq, yq), truth)
    random = np.random.default_rng(0).standard_normal((len(yq), len(ytr)))
    assert score > 0.9
    assert score_identity < score - 0.1
    assert abs(lds_from_scores(random, truth)) < 0.15


def test_matches_independent_refits_and_scipy_spearman(logistic):
    exact, truth, Xtr, ytr, Xq, yq = logistic
    n = len(ytr)
    assert truth.masks.shape == (30, n) and truth.losses.shape == (len(yq), 30)
    assert_array_equal(truth.masks.sum(axis=1), n // 2)
    for j in [0, 17]:  # refit by hand: plain sklearn and the log-loss
        keep = truth.masks[j]
        est = clone(exact.estimator_).fit(Xtr[keep], ytr[keep])
        proba = est.predict_proba(Xq)[np.arange(len(yq)), yq]
        assert_allclose(truth.losses[:, j], -np.log(proba), rtol=1e-5)
    S = exact.influence(Xq, yq)
    predicted = S @ (~truth.masks).T / n  # loss change from the removed points
    pairs = zip(predicted, truth.losses, strict=True)
    expected = [stats.spearmanr(p, a)[0] for p, a in pairs]
    score, per_query = lds_from_scores(S, truth, return_per_query=True)
    assert_allclose(per_query, expected, atol=1e-12)
    assert score == pytest.approx(np.mean(expected))


def test_linear_datamodel_scores_one_and_orientation():
    rng = np.random.default_rng(0)
    n, m, q = 40, 25, 3
    masks = np.zeros((m, n), dtype=bool)
    for row in masks:
        row[rng.choice(n, n // 2, replace=False)] = True
    S = rng.standard_normal((q, n))
    # Removal effects that add up exactly: loss = full + sum_removed S / n.
    truth = _truth(masks, 5.0 + S @ (~masks).T / n)
    assert lds_from_scores(S, truth) == pytest.approx(1.0)
    assert lds_from_scores(-S, truth) == pytest.approx(-1.0)
    assert lds_from_scores(-S, truth, higher_is="harmful") == pytest.approx(1.0)
    # Invariant to scale and to a constant added to a row (equal-size subsets).
    noisy = _truth(masks, truth.losses + rng.standard_normal((q, m)) * 0.1)
    shifted = 3.0 * S + rng.standard_normal((q, 1))
    assert lds_from_scores(shifted, noisy) == pytest.approx(lds_from_scores(S, noisy))


def test_per_query_nan_where_undefined(logistic):
    exact, truth, Xtr, ytr, Xq, yq = logistic
    S = exact.influence(Xq, yq)
    S[3] = 0.0
    score, per_query = lds_from_scores(S, truth, return_per_query=True)
    assert per_query.shape == (len(yq),)
    assert np.isnan(per_query[3]) and np.isfinite(np.delete(per_query, 3)).all()
    assert score == pytest.approx(np.mean(np.delete(per_query, 3)))
    with pytest.warns(UserWarning, match="undefined for every query"):
        assert np.isnan(lds_from_scores(np.zeros_like(S), truth))


def test_bootstrap_interval(logistic):
    exact, truth, *_, Xq, yq = logistic
    S = exact.influence(Xq, yq)
    score, per_query, (low, high) = lds_from_scores(
        S, truth, return_per_query=True, confidence_level=0.9, random_state=0
    )
    assert low < score < high < 1.0
    assert high - low < 0.1
    _, ci = lds_from_scores(S, truth, confidence_level=0.9, random_state=0)
    assert ci == (low, high)


def test_ridge_exact_beats_identity(diabetes):
    # Measured: exact 0.865, identity 0.621.
    Xtr, Xte, ytr, yte = diabetes
    Xq, yq = Xte[:20], yte[:20]
    scores = {}
    for curvature in ["exact", "identity"]:
        scorer = InfluenceScorer(Ridge(alpha=1.0), curvature=curvature).fit(Xtr, ytr)
        scores[curvature] = lds(scorer, Xq, yq, n_subsets=30, random_state=0)
    assert scores["exact"] > 0.8
    assert scores["identity"] < scores["exact"] - 0.1


def test_prediction_target_without_labels(diabetes):
    Xtr, Xte, ytr, _ = diabetes
    scorer = InfluenceScorer(Ridge(alpha=1.0)).fit(Xtr, ytr)
    truth = lds_ground_truth(
        scorer, Xte[:5], None, target="prediction", n_subsets=10, random_state=0
    )
    est = Ridge(alpha=1.0).fit(Xtr[truth.masks[4]], ytr[truth.masks[4]])
    assert_allclose(truth.losses[:, 4], est.predict(Xte[:5]))
    S = scorer.influence(Xte[:5], target="prediction")
    assert lds_from_scores(S, truth) > 0.8


def test_precomputed_scores_and_reproducibility(logistic):
    exact, truth, Xtr, ytr, Xq, yq = logistic
    S = exact.influence(Xq, yq)
    again = lds_ground_truth(exact, Xq, yq, n_subsets=30, random_state=0)
    assert_array_equal(again.masks, truth.masks)
    assert_array_equal(again.losses, truth.losses)
    assert lds(exact, Xq, yq, n_subsets=30, random_state=0) == lds_from_scores(S, truth)
    # Scores from elsewhere (here reversed) go through ``scores=``.
    flipped = lds(exact, Xq, yq, n_subsets=30, random_state=0, scores=-S)
    assert flipped == pytest.approx(-lds_from_scores(S, truth))
    other = lds_ground_truth(exact, Xq, yq, n_subsets=30, random_state=1)
    assert not np.array_equal(other.masks, truth.masks)


def test_seeds_averaged(diabetes):
    Xtr, Xte, ytr, yte = diabetes
    scorer = InfluenceScorer(Ridge(alpha=1.0)).fit(Xtr, ytr)
    truth = lds_ground_truth(
        scorer, Xte[:4], yte[:4], alpha=0.3, n_subsets=5, n_seeds=3, random_state=0
    )
    assert truth.seed_losses.shape == (3, 4, 5)
    assert truth.seeds.shape == (5, 3)
    assert_array_equal(truth.masks.sum(axis=1), int(0.3 * len(ytr)))
    assert_allclose(truth.losses, truth.seed_losses.mean(axis=0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": 1e-4}, "raise alpha"),
        ({"n_subsets": 1}, "n_subsets"),
        ({"n_seeds": 0}, "n_seeds"),
        ({"target": "margin"}, "target"),
        ({"confidence_level": 1.5}, "confidence_level"),
        ({"scores": np.zeros((3, 5))}, r"shape \(n_query, n_train\)"),
    ],
)
def test_invalid_arguments(diabetes, kwargs, match):
    Xtr, Xte, ytr, yte = diabetes
    scorer = InfluenceScorer(Ridge()).fit(Xtr, ytr)
    with pytest.raises(ValueError, match=match):
        lds(scorer, Xte[:3], yte[:3], **{"n_subsets": 2, **kwargs})


def test_invalid_inputs(diabetes, monkeypatch):
    Xtr, Xte, ytr, yte = diabetes
    with pytest.raises(NotFittedError):
        lds(InfluenceScorer(Ridge()), Xte[:3], yte[:3])
    scorer = InfluenceScorer(Ridge()).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        lds(scorer, Xte[:3], yte[:4], n_subsets=2)
    scores = np.zeros((3, len(ytr) - 1))
    monkeypatch.setattr(scorer.adapter_, "retrain", None)  # checked before retrains
    with pytest.raises(ValueError, match=r"shape \(n_query, n_train\)"):
        lds(scorer, Xte[:3], yte[:3], scores=scores)
    with pytest.raises(ValueError, match="needs y"):
        lds_ground_truth(scorer, Xte[:3], None, n_subsets=2)
    with pytest.raises(ValueError, match="features"):
        lds(scorer, Xte[:3, :4], yte[:3], n_subsets=2)


def test_failed_retrains_are_redrawn(breast_cancer):
    Xtr, Xte, ytr, yte = breast_cancer
    X, y = Xtr[:40], np.zeros(40, dtype=int)
    y[[5, 30]] = 1  # a subset keeping half the rows drops class 1 about 1 in 4
    scorer = InfluenceScorer(_lr(40)).fit(X, y)
    truth = lds_ground_truth(scorer, Xte[:5], yte[:5], n_subsets=10, random_state=0)
    assert truth.n_redraws > 0
    assert truth.masks[:, [5, 30]].any(axis=1).all()


def test_retrain_that_always_fails_raises(diabetes, monkeypatch):
    Xtr, Xte, ytr, yte = diabetes
    scorer = InfluenceScorer(Ridge()).fit(Xtr, ytr)

    def broken(keep, *, warm_start, random_state):
        raise ValueError("cannot fit this subset")

    monkeypatch.setattr(scorer.adapter_, "retrain", broken)
    with pytest.raises(RuntimeError, match="10 successive.*cannot fit this subset"):
        lds(scorer, Xte[:3], yte[:3], n_subsets=2)


def _torch_scorer(wine):
    torch = pytest.importorskip("torch")
    from skinfluence.models import TorchClassifier

    Xtr, Xte, ytr, yte = wine
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)
    )
    clf = TorchClassifier(mlp, weight_decay=1e-2, max_iter=100, random_state=0)
    scorer = InfluenceScorer(clf, curvature="identity").fit(Xtr[:60, :5], ytr[:60])
    return scorer, Xte[:8, :5], yte[:8]


def test_torch_cold_retrains_follow_the_seed(wine):
    scorer, Xq, yq = _torch_scorer(wine)
    keep = np.ones(60, dtype=bool)
    keep[::3] = False

    def cold(seed):
        new = scorer.adapter_.retrain(keep, warm_start=False, random_state=seed)
        return new.params(), new.loss(Xq, yq)

    (p1, l1), (p1b, l1b), (p2, l2) = cold(1), cold(1), cold(2)
    assert_array_equal(p1, p1b)
    assert_array_equal(l1, l1b)
    assert np.abs(p1 - p2).max() > 1e-2
    assert np.abs(l1 - l2).max() > 1e-3


def test_torch_ground_truth_records_its_seeds(wine):
    scorer, Xq, yq = _torch_scorer(wine)
    truth = lds_ground_truth(scorer, Xq, yq, n_subsets=2, n_seeds=2, random_state=0)
    assert truth.seeds[0, 0] != truth.seeds[0, 1]
    assert not np.allclose(truth.seed_losses[0], truth.seed_losses[1])
    j, k = 1, 1
    new = scorer.adapter_.retrain(
        truth.masks[j], warm_start=False, random_state=int(truth.seeds[j, k])
    )
    assert_allclose(truth.seed_losses[k, :, j], new.loss(Xq, yq))
