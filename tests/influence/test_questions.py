"""Up-weighting, input perturbation, label change, groups and self-influence of
the output, each against actual retraining of the modified training set."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import LogisticRegression, Ridge

from skinfluence import InfluenceScorer
from skinfluence.evaluation import loo_change


def _lr(n, lam=0.1):
    return LogisticRegression(C=1 / (lam * n), tol=1e-12, max_iter=10_000)


def _loss(est, X, y):
    if hasattr(est, "predict_proba"):
        P = est.predict_proba(X)
        return -np.log(P[np.arange(len(y)), np.searchsorted(est.classes_, y)])
    return 0.5 * (est.predict(X) - y) ** 2


def _corr(a, b):
    return np.corrcoef(np.ravel(a), np.ravel(b))[0, 1]


def _slope(pred, actual):
    pred, actual = np.ravel(pred), np.ravel(actual)
    return pred @ actual / (pred @ pred)


def test_upweighting_against_weighted_refit(breast_cancer):
    # J + eps * loss_i is sklearn's objective with sample_weight_i = 1 + n eps.
    Xtr, Xte, ytr, yte = breast_cancer
    n, eps = len(ytr), 0.05 / len(ytr)
    est = _lr(n)
    scorer = InfluenceScorer(est).fit(Xtr, ytr)
    U = scorer.upweighting(Xte[:3], yte[:3])
    assert_allclose(U, -scorer.influence(Xte[:3], yte[:3]))
    base = _loss(est.fit(Xtr, ytr), Xte[:3], yte[:3])
    for i in [0, 11, 250]:
        w = np.ones(n)
        w[i] += n * eps
        changed = _loss(_lr(n).fit(Xtr, ytr, sample_weight=w), Xte[:3], yte[:3])
        assert_allclose((changed - base) / eps, U[:, i], rtol=0.05, atol=1e-4)


@pytest.mark.parametrize("data", ["breast_cancer", "wine"])
def test_label_change_against_refit(data, request):
    Xtr, Xte, ytr, yte = request.getfixturevalue(data)
    n = len(ytr)
    scorer = InfluenceScorer(_lr(n)).fit(Xtr, ytr)
    q = slice(0, 3)
    R = scorer.label_change(Xte[q], yte[q])
    K = len(scorer.classes_)
    assert R.shape == (3, n, K)
    assert_allclose(R[:, np.arange(n), np.searchsorted(scorer.classes_, ytr)], 0.0)
    base = _loss(_lr(n).fit(Xtr, ytr), Xte[q], yte[q])
    pred, actual = [], []
    for i in [1, 8, 40, 77]:
        for k, c in enumerate(scorer.classes_):
            if c == ytr[i]:
                continue
            y2 = ytr.copy()
            y2[i] = c
            actual.append(_loss(_lr(n).fit(Xtr, y2), Xte[q], yte[q]) - base)
            pred.append(R[:, i, k] / n)
    assert _corr(pred, actual) > 0.99
    assert 0.8 < _slope(pred, actual) < 1.25


@pytest.mark.parametrize("model", ["ridge", "logistic"])
def test_input_perturbation_against_refit(model, diabetes, breast_cancer):
    Xtr, Xte, ytr, yte = diabetes if model == "ridge" else breast_cancer
    n = len(ytr)

    def make():
        return Ridge(alpha=1.0) if model == "ridge" else _lr(n)

    scorer = InfluenceScorer(make()).fit(Xtr, ytr)
    q = slice(0, 3)
    R = scorer.input_perturbation(Xte[q], yte[q])
    assert R.shape == (3, n, Xtr.shape[1])
    base = _loss(make().fit(Xtr, ytr), Xte[q], yte[q])
    rng = np.random.default_rng(0)
    pred, actual = [], []
    for i in [2, 30, 99, 150]:
        delta = 0.05 * rng.standard_normal(Xtr.shape[1])
        X2 = Xtr.copy()
        X2[i] += delta
        actual.append(_loss(make().fit(X2, ytr), Xte[q], yte[q]) - base)
        pred.append(R[:, i] @ delta / n)
    assert _corr(pred, actual) > 0.99
    assert 0.9 < _slope(pred, actual) < 1.1


def test_group_removal_against_refit(breast_cancer):
    # Coherent groups (nearest neighbours in input space) move the model more
    # than the sum of their members' effects; the Newton step follows.
    Xtr, Xte, ytr, yte = breast_cancer
    n = len(ytr)
    order = np.argsort(Xtr[:, 0])
    groups = np.empty(n, dtype=int)
    groups[order] = np.arange(n) // 25
    scorer = InfluenceScorer(_lr(n)).fit(Xtr, ytr)
    q = slice(0, 4)
    first = scorer.group_influence(Xte[q], yte[q], groups)
    newton = scorer.group_influence(Xte[q], yte[q], groups, method="newton")
    assert first.shape == newton.shape == (4, len(np.unique(groups)))
    base = _loss(_lr(n).fit(Xtr, ytr), Xte[q], yte[q])
    actual = np.column_stack(
        [
            _loss(_lr(n).fit(Xtr[groups != g], ytr[groups != g]), Xte[q], yte[q]) - base
            for g in np.unique(groups)
        ]
    )
    assert _corr(first / n, actual) > 0.95
    err_first = np.linalg.norm(first / n - actual)
    err_newton = np.linalg.norm(newton / n - actual)
    assert _corr(newton / n, actual) > 0.99
    assert err_newton < 0.5 * err_first


def test_group_of_singletons_is_pairwise(breast_cancer):
    Xtr, Xte, ytr, yte = breast_cancer
    scorer = InfluenceScorer(_lr(len(ytr))).fit(Xtr, ytr)
    S = scorer.influence(Xte[:2], yte[:2])
    assert_allclose(scorer.group_influence(Xte[:2], yte[:2], np.arange(len(ytr))), S)
    with pytest.raises(ValueError, match="one label per row of the X passed to fit"):
        scorer.group_influence(Xte[:2], yte[:2], [0, 1])


def test_self_influence_of_the_prediction_against_loo(diabetes):
    Xtr, _, ytr, _ = diabetes
    scorer = InfluenceScorer(Ridge(alpha=1.0)).fit(Xtr, ytr)
    s = scorer.self_influence(target="prediction")
    idx = [0, 5, 17, 60, 200]
    actual = [
        loo_change(scorer, Xtr[i : i + 1], None, [i], target="prediction")[0, 0]
        for i in idx
    ]
    assert _corr(s[idx] / len(ytr), actual) > 0.999
    assert 0.95 < _slope(s[idx] / len(ytr), actual) < 1.1  # leverage: exact is 1/(1-h)
    assert_allclose(scorer.self_influence(target="loss"), scorer.self_influence_)


@pytest.mark.parametrize("class_weight", [{0: 3.0, 1: 0.5}, "balanced"])
def test_label_change_with_class_weights(class_weight, breast_cancer):
    # The relabelled point takes the weight of its new class.
    Xtr, Xte, ytr, yte = breast_cancer
    n = len(ytr)

    def make():
        return LogisticRegression(
            C=1 / (0.1 * n), tol=1e-12, max_iter=10_000, class_weight=class_weight
        )

    scorer = InfluenceScorer(make()).fit(Xtr, ytr)
    R = scorer.label_change(Xte[:3], yte[:3])
    base = _loss(make().fit(Xtr, ytr), Xte[:3], yte[:3])
    pred, actual = [], []
    for i in [1, 8, 40, 77, 200]:
        y2 = ytr.copy()
        y2[i] = 1 - y2[i]
        actual.append(_loss(make().fit(Xtr, y2), Xte[:3], yte[:3]) - base)
        pred.append(R[:, i, 1 - ytr[i]] / n)
    # fixed weights (a 6x ratio: relabelling is a large perturbation) are
    # followed to first order; "balanced" recomputes every point's weight on
    # refit, an effect influence ignores
    assert _corr(pred, actual) > (0.98 if isinstance(class_weight, dict) else 0.9)
    if isinstance(class_weight, dict):
        assert 0.8 < _slope(pred, actual) < 1.25


def test_network_paths_equal_closed_form(wine):
    # A bias-free linear TorchClassifier is sklearn's multinomial logistic
    # regression without intercept: the torch.func label-change, input-
    # perturbation and output self-influence must equal the closed forms.
    torch = pytest.importorskip("torch")
    from skinfluence import TorchClassifier

    Xtr, Xte, ytr, yte = wine
    lam = 0.05
    lin = torch.nn.Linear(Xtr.shape[1], 3, bias=False)
    net = InfluenceScorer(TorchClassifier(lin, weight_decay=lam, tol=1e-12))
    net.fit(Xtr, ytr)
    lr = LogisticRegression(C=1 / (lam * len(ytr)), fit_intercept=False, tol=1e-12)
    ref = InfluenceScorer(lr).fit(Xtr, ytr)
    q = slice(0, 3)
    for method in ("label_change", "input_perturbation"):
        got = getattr(net, method)(Xte[q], yte[q])
        want = getattr(ref, method)(Xte[q], yte[q])
        assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    got = net.self_influence(target="prediction")
    want = ref.self_influence(target="prediction")
    assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
