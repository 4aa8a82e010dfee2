"""Influence against actual leave-one-out retraining (the ground truth).

Protocol (Koh & Liang 2017): random test points; for each, the training
points with the largest predicted |change| plus a random sample; each removed
point is retrained for (warm start, tol=1e-10).  Logistic models use an L2
strength on the mean loss (``C = 1 / (lambda n)``) in the regime where the
first-order expansion holds: with weak penalties on a few hundred points,
high-leverage removals move the model more than the linear prediction
(slope > 1); see ``test_ridge_exact_loo_identity`` for that effect in closed
form.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV

from skinfluence import InfluenceScorer
from skinfluence.curvature import CGCurvature
from skinfluence.evaluation import (
    loo_change,
    loo_correlation,
    loo_slope,
    make_loo_scorer,
)


def _fidelity(scorer, Xte, yte, *, n_queries=4, k_top=30, k_random=20, target="loss"):
    rng = np.random.default_rng(0)
    # Queries the model does not already fit: at a near-zero residual the
    # loss's first-order term vanishes and second order dominates.
    loss = scorer.adapter_.loss(Xte, yte)
    pool = np.flatnonzero(loss >= np.median(loss))
    q = rng.choice(pool, n_queries, replace=False)
    S = scorer.influence(Xte[q], yte[q], target=target)
    n = scorer.n_train_
    top = np.argsort(-np.max(np.abs(S), axis=0))[:k_top]
    rest = np.setdiff1d(np.arange(n), top)
    idx = np.concatenate([top, rng.choice(rest, k_random, replace=False)])
    actual = loo_change(scorer, Xte[q], yte[q], idx, target=target)
    predicted = S[:, idx] / n
    return predicted, actual


def _assert_faithful(predicted, actual, *, pearson=0.99, slope=(0.9, 1.2)):
    r = loo_correlation(predicted, actual, average=False)
    assert r.mean() >= pearson and r.min() >= pearson - 0.01, r
    b = loo_slope(predicted, actual)
    assert slope[0] <= b <= slope[1], b


def _lr(n, lam, **kw):
    return LogisticRegression(C=1.0 / (lam * n), tol=1e-10, max_iter=5000, **kw)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_binary_logistic_breast_cancer(breast_cancer, fit_intercept):
    Xtr, Xte, ytr, yte = breast_cancer
    est = _lr(len(ytr), 0.1, fit_intercept=fit_intercept)
    scorer = InfluenceScorer(est, curvature="exact").fit(Xtr, ytr)
    _assert_faithful(*_fidelity(scorer, Xte, yte))


@pytest.mark.parametrize("curvature", ["exact", CGCurvature(rtol=1e-10)])
def test_multinomial_logistic_digits(digits, curvature):
    Xtr, Xte, ytr, yte = digits
    scorer = InfluenceScorer(_lr(len(ytr), 0.03), curvature=curvature).fit(Xtr, ytr)
    _assert_faithful(*_fidelity(scorer, Xte, yte, n_queries=3))


@pytest.mark.parametrize("target", ["loss", "prediction"])
@pytest.mark.parametrize("est", [Ridge(alpha=1.0), LinearRegression()])
def test_regression_diabetes(diabetes, est, target):
    Xtr, Xte, ytr, yte = diabetes
    scorer = InfluenceScorer(est).fit(Xtr, ytr)
    fidelity = _fidelity(scorer, Xte, yte, target=target)
    _assert_faithful(*fidelity, pearson=0.995, slope=(0.95, 1.1))


def test_classifier_prediction_target(breast_cancer):
    # f = log-probability of the predicted class
    Xtr, Xte, ytr, yte = breast_cancer
    scorer = InfluenceScorer(_lr(len(ytr), 0.1)).fit(Xtr, ytr)
    _assert_faithful(*_fidelity(scorer, Xte, yte, target="prediction"))


def test_string_labels_loo(breast_cancer):
    Xtr, Xte, ytr, yte = breast_cancer
    names = np.array(["benign", "malignant"])
    scorer = InfluenceScorer(_lr(len(ytr), 0.1)).fit(Xtr, names[ytr])
    _assert_faithful(*_fidelity(scorer, Xte, names[yte], n_queries=2))


def test_ridge_exact_loo_identity(diabetes):
    # Least squares: theta_{-i} - theta = H^{-1} g_i / (n (1 - h_i)) exactly,
    # h_i = x~_i^T (n H)^{-1} x~_i.  So parameter_change is the first-order
    # term, off exactly by the leverage factor.
    Xtr, _, ytr, _ = diabetes
    scorer = InfluenceScorer(Ridge(alpha=5.0)).fit(Xtr, ytr)
    idx = np.array([0, 7, 42, 99])
    predicted = scorer.parameter_change(idx)
    H = scorer.adapter_.hessian_matrix()
    Xt = np.hstack([Xtr, np.ones((len(Xtr), 1))])
    lev = np.einsum("ij,ji->i", Xt[idx], np.linalg.solve(H, Xt[idx].T)) / len(Xtr)
    for row, i in enumerate(idx):
        keep = np.ones(len(ytr), bool)
        keep[i] = False
        refit = Ridge(alpha=5.0).fit(Xtr[keep], ytr[keep])
        actual = np.append(refit.coef_, refit.intercept_) - scorer.adapter_.params()
        assert_allclose(predicted[row] / (1 - lev[row]), actual, rtol=1e-8, atol=1e-9)


def test_warm_and_cold_start_agree_for_convex(breast_cancer):
    Xtr, Xte, ytr, yte = breast_cancer
    scorer = InfluenceScorer(_lr(len(ytr), 0.1)).fit(Xtr, ytr)
    warm = loo_change(scorer, Xte[:3], yte[:3], [0, 5, 9], warm_start=True)
    cold = loo_change(scorer, Xte[:3], yte[:3], [0, 5, 9], warm_start=False)
    assert_allclose(warm, cold, rtol=1e-3, atol=1e-9)


def test_loo_correlation_orientation():
    p = np.array([[1.0, 2.0, 3.0, 4.0]])
    a = 2 * p
    assert loo_correlation(p, a) == pytest.approx(1.0)
    assert loo_correlation(-p, a, higher_is="harmful") == pytest.approx(1.0)
    assert loo_correlation(p, a, method="spearman") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        loo_correlation(p, a[:, :2])


def test_loo_scorer_in_grid_search(breast_cancer):
    # Damping far above the Hessian's scale hurts fidelity; the LOO scorer sees it.
    Xtr, _, ytr, _ = breast_cancer
    grid = GridSearchCV(
        InfluenceScorer(_lr(len(ytr), 0.1)),
        {"damping": [0.0, 10.0]},
        scoring=make_loo_scorer(15, n_queries=2, method="pearson", random_state=0),
        cv=2,
    ).fit(Xtr, ytr)
    assert grid.best_params_["damping"] == 0.0
    scores = grid.cv_results_["mean_test_score"]
    assert scores[0] > 0.99 and scores[0] > scores[1]


def test_loo_change_checks_inputs(breast_cancer):
    Xtr, Xte, ytr, yte = breast_cancer
    scorer = InfluenceScorer(_lr(len(ytr), 0.1)).fit(Xtr, ytr)
    with pytest.raises(IndexError):
        loo_change(scorer, Xte[:1], yte[:1], [len(ytr)])
    with pytest.raises(ValueError, match="features"):
        loo_change(scorer, Xte[:1, :4], yte[:1], [0])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        loo_change(scorer, Xte[:2], yte[:1], [0])
    with pytest.raises(ValueError, match="needs y"):
        loo_change(scorer, Xte[:2], None, [0])


def test_loo_change_passes_warm_start_to_the_retrain_hook(breast_cancer):
    Xtr, Xte, ytr, yte = breast_cancer
    scorer = InfluenceScorer(_lr(len(ytr), 0.1)).fit(Xtr, ytr)
    seen = []
    retrain = scorer.adapter_.retrain

    def spy(keep, *, warm_start=True):
        seen.append(warm_start)
        return retrain(keep, warm_start=warm_start)

    scorer.adapter_.retrain = spy
    loo_change(scorer, Xte[:1], yte[:1], [0, 1], warm_start=False)
    assert seen == [False, False, False]
