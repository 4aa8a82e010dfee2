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
