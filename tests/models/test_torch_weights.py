"""Sample weights on the torch path, against ground truth: integer weights are
duplicated rows, a linear network is weighted logistic regression in closed
form, and influence predicts actual weighted refits."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

torch = pytest.importorskip("torch")

from skinfluence import InfluenceScorer  # noqa: E402
from skinfluence.evaluation import loo_change, loo_correlation  # noqa: E402
from skinfluence.models import (  # noqa: E402
    TorchAdapter,
    TorchClassifier,
    TorchRegressor,
    make_adapter,
)


def _mlp(d_in, d_out, hidden=5, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(d_in, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, d_out)
    )


@pytest.fixture(scope="module")
def weighted_vs_repeated(wine):
    # One network, two adapters: weights w on the rows, and each row repeated
    # w times.  With n rows and N = sum w repeated rows, J_w = (N/n) J_rep when
    # the repeated adapter's penalty is pen * n / N.
    X, _, y, _ = wine
    X, y = X[:40, :4], y[:40]
    w = np.random.default_rng(0).integers(0, 4, len(y)).astype(float)
    w[:3] = [1.0, 2.0, 3.0]
    rep = np.repeat(np.arange(len(y)), w.astype(int))
    module, pen = _mlp(4, 3), 0.05
    loss = torch.nn.CrossEntropyLoss()
    aw = TorchAdapter(
        module, loss, X, y, kind="multiclass", classes=np.unique(y), penalty=pen,
        sample_weight=w,
    )  # fmt: skip
    ar = TorchAdapter(
        module, loss, X[rep], y[rep], kind="multiclass", classes=np.unique(y),
        penalty=pen * len(y) / len(rep),
    )  # fmt: skip
    return aw, ar, len(rep) / len(y), w, rep


def test_weights_equal_repeated_rows(weighted_vs_repeated):
    aw, ar, scale, w, rep = weighted_vs_repeated
    assert_allclose(aw.weights, w)
    assert_allclose(aw.objective_grad(), scale * ar.objective_grad(), atol=1e-12)
    assert_allclose(aw.hessian_matrix(), scale * ar.hessian_matrix(), atol=1e-12)
    assert_allclose(aw.ggn_matrix(), scale * ar.ggn_matrix(), atol=1e-12)
    assert_allclose(
        aw.train_grads().sum(0), ar.train_grads().sum(0), rtol=1e-10, atol=1e-12
    )
    theta = aw.params() + 0.1
    assert_allclose(
        aw.batch_objective_grad(theta, slice(None)),
        scale * ar.batch_objective_grad(theta, slice(None)),
        atol=1e-12,
    )
    # per-row: w_i g_i, and the mixed input derivative carries w_i too
    g = aw.loss_grads(aw._np(aw._X[:3]), aw.classes[aw._np(aw._y[:3]).astype(int)])
    assert_allclose(aw.train_grads([0, 1, 2]), w[:3, None] * g, rtol=1e-12)


def test_weighted_gauss_newton_blocks(weighted_vs_repeated):
    # The Kronecker/Jacobian block code (not the adapter's products) weighs
    # each row's output Hessian too.
    aw, _, _, _, _ = weighted_vs_repeated
    idx = [np.arange(0, 20), np.arange(20, aw.n_params)]  # spans two layers
    G = aw.ggn_matrix()
    for Gb, b in zip(aw.ggn_blocks(idx), idx, strict=True):
        assert_allclose(Gb, G[np.ix_(b, b)], atol=1e-12)
    lin = torch.nn.Linear(4, 3)
    X, y = aw._np(aw._X), aw.classes[aw._np(aw._y).astype(int)]
    a1 = TorchAdapter(
        lin, torch.nn.CrossEntropyLoss(), X, y, kind="multiclass",
        classes=aw.classes, penalty=0.1, sample_weight=aw.weights,
    )  # fmt: skip
    all_ = [np.arange(a1.n_params)]
    assert_allclose(a1.ggn_blocks(all_)[0], a1.ggn_matrix(), atol=1e-12)


def test_weighted_proximal_response_equals_repeated(weighted_vs_repeated):
    # The proximal objective J + (lam/2)||theta - theta_s||^2 is minimised at
    # the same point for J_w and for J_rep = J_w / scale with lam / scale.
    aw, ar, scale, _, _ = weighted_vs_repeated
    lam = 0.2
    got = aw.response(None, damping=lam, kind="proximal").params()
    ref = ar.response(None, damping=lam / scale, kind="proximal").params()
    assert_allclose(got, ref, atol=1e-6)


def test_with_data_drops_the_weights(weighted_vs_repeated):
    aw, _, _, _, _ = weighted_vs_repeated
    X, y = aw._np(aw._X[:10]), aw.classes[aw._np(aw._y[:10]).astype(int)]
    new = aw.with_data(X, y)
    assert new.sample_weight is None
    assert_allclose(new.weights, np.ones(10))


def test_weighted_linear_network_equals_weighted_logistic_regression(wine):
    # bias-free nn.Linear + cross-entropy + weight decay lam is multinomial
    # LogisticRegression(C = 1 / (lam n), fit_intercept=False) with the same
    # sample weights: same objective, same influence.
    X, Xte, y, yte = wine
    w = np.random.default_rng(1).uniform(0.2, 3.0, len(y))
    lam = 0.05
    lin = torch.nn.Linear(X.shape[1], 3, bias=False)
    net = TorchClassifier(lin, weight_decay=lam, random_state=0, tol=1e-12)
    lr = LogisticRegression(C=1 / (lam * len(y)), fit_intercept=False, tol=1e-12)
    st = InfluenceScorer(net).fit(X, y, sample_weight=w)
    ss = InfluenceScorer(lr).fit(X, y, sample_weight=w)
    assert_allclose(st.adapter_.params(), ss.adapter_.params(), atol=1e-6)
    assert st.grad_norm_ < 1e-8
    S_t, S_s = st.influence(Xte, yte), ss.influence(Xte, yte)
    assert_allclose(S_t, S_s, rtol=1e-4, atol=1e-6 * np.abs(S_s).max())
    # the weighted PBRF response (removing one row) is the closed-form one
    for m in (0, 5):
        assert_allclose(
            st.adapter_.response(m, damping=0.1).params(),
            ss.adapter_.response(m, damping=0.1).params(),
            atol=1e-6,
        )
    # and the weights matter: unweighted influence is different
    S_u = InfluenceScorer(lr).fit(X, y).influence(Xte, yte)
    assert not np.allclose(S_u, S_s, rtol=1e-2)


def test_weighted_regressor_influence_predicts_weighted_refits(diabetes):
    X, Xte, y, yte = diabetes
    X, y = X[:80, :5], y[:80] / 100
    w = np.random.default_rng(2).uniform(0.3, 2.0, len(y))
    # measured: Pearson 0.994 (0.997 unweighted) at this decay
    reg = TorchRegressor(_mlp(5, 1, hidden=4), weight_decay=0.2, random_state=0)
    scorer = InfluenceScorer(reg, curvature="exact").fit(X, y, sample_weight=w)
    assert scorer.grad_norm_ < 1e-7
    q = slice(0, 2)
    S = scorer.influence(Xte[q, :5], yte[q] / 100)
    idx = np.argsort(-np.abs(S).max(axis=0))[:15]
    actual = loo_change(scorer, Xte[q, :5], yte[q] / 100, idx, warm_start=True)
    assert loo_correlation(S[:, idx] / scorer.n_train_, actual) > 0.98


def test_weighted_fit_minimises_the_weighted_objective(wine):
    # Zero weight = row absent; an integer weight = a repeated row.
    X, _, y, _ = wine
    X, y = X[:50, :4], y[:50]
    w = np.ones(len(y))
    w[:10] = 0.0
    w[10:15] = 2.0
    rep = np.repeat(np.arange(len(y)), w.astype(int))
    kw = dict(weight_decay=0.05, random_state=0, tol=1e-12)
    a = TorchClassifier(_mlp(4, 3), **kw).fit(X, y, sample_weight=w)
    # repeated rows: same minimiser when the decay is rescaled to n / N
    kw["weight_decay"] = 0.05 * len(y) / len(rep)
    b = TorchClassifier(_mlp(4, 3), **kw).fit(X[rep], y[rep])
    for p, q in zip(a.module_.parameters(), b.module_.parameters(), strict=True):
        assert_allclose(p.detach(), q.detach(), atol=1e-5)


def test_sample_weight_is_validated():
    X, y = np.random.default_rng(0).standard_normal((10, 2)), np.arange(10) % 2
    clf = TorchClassifier(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        clf.fit(X, y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        clf.fit(X, y, sample_weight=-np.ones(10))


def test_frozen_skorch_net_with_weights(wine):
    skorch = pytest.importorskip("skorch")
    X, _, y, _ = wine
    X, y = X[:60, :4].astype(np.float32), y[:60]
    w = np.random.default_rng(3).uniform(0.5, 2.0, len(y))
    torch.manual_seed(0)
    net = skorch.NeuralNetClassifier(
        torch.nn.Linear(4, 3), criterion=torch.nn.CrossEntropyLoss,
        train_split=None, max_epochs=3, verbose=0,
    ).fit(X, y)  # fmt: skip
    plain = make_adapter(net, X, y)
    weighted = make_adapter(net, X, y, sample_weight=w)
    assert_allclose(weighted.train_grads(), w[:, None] * plain.train_grads())
    G = np.diag(w) @ plain.train_grads() / len(y)  # sum_i w_i g_i / n
    assert_allclose(
        weighted.objective_grad() - weighted.penalty * weighted.params(),
        G.sum(0),
        atol=1e-10,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scorer = InfluenceScorer(FrozenEstimator(net)).fit(X, y, sample_weight=w)
    assert_allclose(scorer.adapter_.weights, w)
    keep = np.ones(len(y), bool)
    with pytest.raises(ValueError, match="skorch's fit has no sample_weight"):
        weighted.retrain(keep)
