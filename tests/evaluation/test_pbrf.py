"""PBRF: equals leave-one-out for converged convex models (the sanity
identity), and is what influence estimates for an unconverged network."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import LogisticRegression, Ridge

from skinfluence import InfluenceScorer
from skinfluence.evaluation import (
    loo_change,
    loo_correlation,
    pbrf_change,
    proximal_change,
)


@pytest.mark.parametrize("model", ["logistic", "ridge"])
def test_pbrf_equals_loo_for_converged_convex_models(model, breast_cancer, diabetes):
    Xtr, Xte, ytr, yte = breast_cancer if model == "logistic" else diabetes
    n = len(ytr)
    est = (
        LogisticRegression(C=1 / (0.1 * n), tol=1e-12, max_iter=10_000)
        if model == "logistic"
        else Ridge(alpha=1.0)
    )
    scorer = InfluenceScorer(est).fit(Xtr, ytr)
    idx = [0, 4, 19, 77, 150]
    loo = loo_change(scorer, Xte[:3], yte[:3], idx)
    pbrf = pbrf_change(scorer, Xte[:3], yte[:3], idx, damping=0.0)
    prox = proximal_change(scorer, Xte[:3], yte[:3], idx, damping=0.0)
    scale = np.abs(loo).max()
    assert_allclose(pbrf, loo, atol=1e-4 * scale)
    assert_allclose(prox, loo, atol=1e-4 * scale)


def test_influence_tracks_pbrf_not_cold_start_on_an_unconverged_network(digits):
    torch = pytest.importorskip("torch")
    from skinfluence import TorchClassifier

    Xtr, Xte, ytr, yte = digits
    Xtr, ytr = Xtr[:400], ytr[:400]
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(64, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10)
    )
    # ~20 epochs of Adam: far from an optimum, as in Bae et al.
    net = TorchClassifier(
        mlp, optimizer="adam", lr=1e-2, max_iter=20, batch_size=32, random_state=0
    )
    lam = 1e-2
    scorer = InfluenceScorer(net, curvature="ggn", damping=lam).fit(Xtr, ytr)
    assert scorer.grad_norm_ > 1e-3  # genuinely not converged
    q = slice(0, 3)
    S = scorer.influence(Xte[q], yte[q])
    idx = np.random.default_rng(0).choice(400, 25, replace=False)
    pbrf = pbrf_change(scorer, Xte[q], yte[q], idx)
    r_pbrf = loo_correlation(S[:, idx] / 400, pbrf)
    cold = loo_change(scorer, Xte[q], yte[q], idx, warm_start=False)
    r_cold = loo_correlation(S[:, idx] / 400, cold)
    # measured: Pearson 0.985 with PBRF (the scale differs: slope ~1.7, a
    # genuine linearisation error at this damping), -0.09 with cold start
    assert r_pbrf >= 0.9, r_pbrf
    assert r_cold < 0.5 and r_pbrf > r_cold + 0.4, (r_pbrf, r_cold)


def test_linear_pbrf_with_damping_is_the_exact_quadratic_response(diabetes):
    # Ridge: the PBRF objective is quadratic, so its minimiser is
    # theta_s + (H + lam I - H_m / n)^{-1} g_m / n exactly.
    Xtr, _, ytr, _ = diabetes
    scorer = InfluenceScorer(Ridge(alpha=2.0)).fit(Xtr, ytr)
    a, n, lam = scorer.adapter_, len(ytr), 0.3
    for m in [3, 40]:
        H_m = a.data_hessian_sum([m])
        A = a.hessian_matrix() + lam * np.eye(a.n_params) - H_m / n
        expected = a.params() + np.linalg.solve(A, a.train_grads([m])[0] / n)
        got = a.response(m, damping=lam, kind="pbrf").params()
        assert_allclose(got, expected, rtol=1e-6, atol=1e-9 * np.abs(expected).max())


def test_torch_pbrf_equals_the_closed_form_on_a_linear_network(wine):
    # A bias-free linear TorchClassifier with weight decay is sklearn's
    # multinomial LR without intercept: their PBRF and proximal responses
    # (damping > 0, penalty > 0) must agree, scale included.
    torch = pytest.importorskip("torch")
    from skinfluence import TorchClassifier

    Xtr, Xte, ytr, yte = wine
    lam, damping = 0.05, 0.1
    lin = torch.nn.Linear(Xtr.shape[1], 3, bias=False)
    net = TorchClassifier(lin, weight_decay=lam, tol=1e-12, random_state=0)
    lr = LogisticRegression(C=1 / (lam * len(ytr)), fit_intercept=False, tol=1e-12)
    t = InfluenceScorer(net, damping=damping).fit(Xtr, ytr)
    s = InfluenceScorer(lr, damping=damping).fit(Xtr, ytr)
    idx = [0, 9, 50]
    for fn in (pbrf_change, proximal_change):
        got, want = fn(t, Xte[:3], yte[:3], idx), fn(s, Xte[:3], yte[:3], idx)
        assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())


def _sgd_net(skorch_cls, module, epochs):
    import torch

    return skorch_cls(
        module,
        optimizer=torch.optim.SGD,
        lr=0.1,
        max_epochs=epochs,
        batch_size=32,
        train_split=None,
        verbose=0,
    )


@pytest.mark.parametrize("network", ["converged", "sgd", "binary"])
def test_influence_is_the_derivative_of_the_pbrf_on_networks(
    network, digits, breast_cancer
):
    # The PBRF's derivative in the removed fraction epsilon is influence with
    # the damped Gauss-Newton matrix; PBRF is solved by optimisation alone
    # (no Gauss-Newton code), so a wrong Bregman term, proximity scale or a
    # stalled solve shows here.  Measured: Pearson 0.9999+, slope 1.00-1.08.
    torch = pytest.importorskip("torch")
    from sklearn.frozen import FrozenEstimator

    from skinfluence import TorchClassifier

    f32 = np.float32
    torch.manual_seed(0)
    if network == "binary":
        skorch = pytest.importorskip("skorch")
        Xtr, Xte, ytr, yte = breast_cancer
        Xtr, Xte, ytr = Xtr[:200].astype(f32), Xte.astype(f32), ytr[:200]
        mod = torch.nn.Sequential(
            torch.nn.Linear(30, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
        )
        est = FrozenEstimator(
            _sgd_net(skorch.NeuralNetBinaryClassifier, mod, 5).fit(Xtr, ytr.astype(f32))
        )
    else:
        Xtr, Xte, ytr, yte = digits
        Xtr, Xte, ytr = Xtr[:300].astype(f32), Xte.astype(f32), ytr[:300]
        act = torch.nn.Tanh() if network == "converged" else torch.nn.ReLU()
        mod = torch.nn.Sequential(torch.nn.Linear(64, 8), act, torch.nn.Linear(8, 10))
        if network == "converged":
            est = TorchClassifier(
                mod, weight_decay=1e-2, tol=1e-8, max_iter=3000, random_state=0
            )
        else:
            skorch = pytest.importorskip("skorch")
            net = _sgd_net(skorch.NeuralNetClassifier, mod, 8)
            net.set_params(criterion=torch.nn.CrossEntropyLoss)
            est = FrozenEstimator(net.fit(Xtr, ytr))
    lam = 1e-2
    scorer = InfluenceScorer(est, curvature="ggn", damping=lam).fit(Xtr, ytr)
    n = scorer.n_train_
    if network != "converged":
        assert scorer.grad_norm_ > 1e-3  # genuinely away from an optimum
    idx = np.random.default_rng(0).choice(n, 8, replace=False)
    Xq, yq = Xte[:3], yte[:3]
    S = scorer.influence(Xq, yq)[:, idx] / n
    P, info = pbrf_change(scorer, Xq, yq, idx, epsilon=0.02, return_info=True)
    assert info["converged"].all(), info
    assert np.all(info["grad_norm"] < 1e-6)
    assert loo_correlation(S, P) >= 0.95
    slope = np.sum(S * P) / np.sum(S * S)
    assert 0.8 < slope < 1.25, slope


def test_pbrf_reports_its_solve_and_validates_epsilon(digits):
    torch = pytest.importorskip("torch")
    from skinfluence import TorchClassifier

    Xtr, Xte, ytr, yte = digits
    torch.manual_seed(0)
    mod = torch.nn.Sequential(torch.nn.Linear(64, 4), torch.nn.Tanh())
    mod.append(torch.nn.Linear(4, 10))
    net = TorchClassifier(mod, optimizer="adam", lr=1e-2, max_iter=3, random_state=0)
    scorer = InfluenceScorer(net, curvature="ggn", damping=1e-2).fit(
        Xtr[:100], ytr[:100]
    )
    delta, info = pbrf_change(scorer, Xte[:2], yte[:2], [0, 5], return_info=True)
    assert delta.shape == (2, 2)
    assert set(info) == {"grad_norm", "n_iter", "converged", "curvature"}
    assert all(v.shape == (2,) for v in info.values())
    assert np.all(info["n_iter"] >= 1)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="epsilon"):
            pbrf_change(scorer, Xte[:2], yte[:2], [0], epsilon=bad)
    with pytest.raises(TypeError, match="epsilon"):
        proximal_change(scorer, Xte[:2], yte[:2], [0], epsilon="small")
