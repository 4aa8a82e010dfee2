"""Torch adapter against ground truth: finite differences through plain
autograd, and the closed-form linear path where the network is linear."""

import copy

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import LogisticRegression

torch = pytest.importorskip("torch")

from skinfluence import InfluenceScorer  # noqa: E402
from skinfluence.evaluation import loo_change, loo_correlation  # noqa: E402
from skinfluence.models import TorchClassifier, TorchRegressor, make_adapter  # noqa: E402


def _mlp(d_in, d_out, hidden=6, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(d_in, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, d_out)
    )


@pytest.fixture(scope="module")
def tiny(wine):
    X, _, y, _ = wine
    X, y = X[:60, :5], y[:60]
    clf = TorchClassifier(_mlp(5, 3), weight_decay=1e-2, random_state=0).fit(X, y)
    return clf, X, y, make_adapter(clf, X, y)


def _objective(clf, X, y, theta):
    """J(theta) by plain reverse-mode autograd, one batched forward (independent
    of the adapter's vmap/jvp path); returns J and the forward function."""
    m = copy.deepcopy(clf.module_)
    names, shapes = zip(*[(k, p.shape) for k, p in m.named_parameters()], strict=True)
    parts = torch.split(theta, [int(np.prod(s)) for s in shapes])
    params = {k: t.reshape(s) for k, t, s in zip(names, parts, shapes, strict=True)}

    def forward(Xt):
        return torch.func.functional_call(m, params, (Xt,))

    Xt, yt = torch.as_tensor(X), torch.as_tensor(np.searchsorted(clf.classes_, y))
    sq = (theta**2).sum()
    return torch.nn.functional.cross_entropy(
        forward(Xt), yt
    ) + 0.5 * clf.weight_decay * sq, forward


def _grad_J(clf, X, y, theta):
    theta = theta.clone().requires_grad_(True)
    J, _ = _objective(clf, X, y, theta)
    return torch.autograd.grad(J, theta)[0].detach().numpy()


def test_objective_gradient_zero_after_lbfgs(tiny):
    clf, X, y, a = tiny
    assert np.linalg.norm(a.objective_grad()) < 1e-6
    theta = torch.as_tensor(a.params())
    assert_allclose(a.objective_grad(), _grad_J(clf, X, y, theta), atol=1e-10)


def test_per_sample_grads_match_autograd(tiny):
    clf, X, y, a = tiny
    for i in [0, 7, 33]:
        m = copy.deepcopy(clf.module_)
        loss = torch.nn.functional.cross_entropy(
            m(torch.as_tensor(X[i : i + 1])), torch.as_tensor([int(y[i])])
        )
        g = torch.autograd.grad(loss, list(m.parameters()))
        assert_allclose(a.train_grads([i])[0], torch.cat([t.reshape(-1) for t in g]))


def test_hvp_finite_differences(tiny):
    clf, X, y, a = tiny
    theta = torch.as_tensor(a.params())
    V = np.random.default_rng(0).standard_normal((a.n_params, 3))
    h = 1e-5
    fd = np.column_stack(
        [
            (
                _grad_J(clf, X, y, theta + h * torch.as_tensor(v))
                - _grad_J(clf, X, y, theta - h * torch.as_tensor(v))
            )
            / (2 * h)
            for v in V.T
        ]
    )
    assert_allclose(a.hessian_matvec(V), fd, rtol=1e-5, atol=1e-8)
    H = a.hessian_matrix()
    assert_allclose(H, H.T, atol=1e-12)
    assert_allclose(H @ V, fd, rtol=1e-5, atol=1e-8)


def test_ggn_products_finite_differences(tiny):
    # G v = (1/n) sum_i J_i^T (diag p_i - p_i p_i^T) J_i v + wd v, with J v by
    # finite differences of the outputs and J^T u by autograd.
    clf, X, y, a = tiny
    theta = torch.as_tensor(a.params())
    v = torch.as_tensor(np.random.default_rng(1).standard_normal(a.n_params))
    h = 1e-6
    _, m_plus = _objective(clf, X, y, theta + h * v)
    _, m_minus = _objective(clf, X, y, theta - h * v)
    Xt = torch.as_tensor(X)
    with torch.no_grad():
        Jv = (m_plus(Xt) - m_minus(Xt)) / (2 * h)
    t = theta.clone().requires_grad_(True)
    _, m = _objective(clf, X, y, t)
    z = m(Xt)
    P = torch.softmax(z, 1).detach()
    u = P * Jv - P * (P * Jv).sum(1, keepdim=True)
    JTu = torch.autograd.grad((z * u).sum(), t)[0].numpy() / len(X)
    expected = JTu + clf.weight_decay * v.numpy()
    assert_allclose(a.ggn_matvec(v.numpy()), expected, rtol=1e-5, atol=1e-9)


def test_linear_network_equals_closed_form(wine):
    # nn.Linear without bias + cross-entropy + weight decay is sklearn's
    # multinomial logistic regression without intercept: same objective.
    X, Xte, y, yte = wine
    lam = 0.05
    lin = torch.nn.Linear(X.shape[1], 3, bias=False)
    net = TorchClassifier(lin, weight_decay=lam, random_state=0, tol=1e-12).fit(X, y)
    lr = LogisticRegression(C=1 / (lam * len(y)), fit_intercept=False, tol=1e-12)
    torch_scores = InfluenceScorer(net).fit(X, y).influence(Xte, yte)
    sk_scores = InfluenceScorer(lr).fit(X, y).influence(Xte, yte)
    assert_allclose(
        torch_scores, sk_scores, rtol=1e-4, atol=1e-6 * np.abs(sk_scores).max()
    )


def test_regressor_prediction_grads(diabetes):
    X, _, y, _ = diabetes
    reg = TorchRegressor(_mlp(10, 1, hidden=4), weight_decay=1e-3, random_state=0)
    reg.fit(X[:80], y[:80] / 100)
    a = make_adapter(reg, X[:80], y[:80] / 100)
    G = a.prediction_grads(X[:3])
    m = copy.deepcopy(reg.module_)
    out = m(torch.as_tensor(X[1:2]))[0, 0]
    g = torch.cat(
        [t.reshape(-1) for t in torch.autograd.grad(out, list(m.parameters()))]
    )
    assert_allclose(G[1], g.numpy(), rtol=1e-10)
    assert_allclose(a.prediction(X[:3]), reg.predict(X[:3]), rtol=1e-10)


def test_network_loo_against_influence(wine):
    # A small MLP trained to an optimum with a strong penalty: warm-start LOO
    # is what influence linearises.
    X, Xte, y, yte = wine
    X, y = X[:90, :6], y[:90]
    clf = TorchClassifier(_mlp(6, 3, hidden=5), weight_decay=0.05, random_state=0)
    scorer = InfluenceScorer(clf, curvature="exact").fit(X, y)
    q = slice(0, 2)
    S = scorer.influence(Xte[q, :6], yte[q])
    idx = np.argsort(-np.abs(S).max(axis=0))[:25]
    actual = loo_change(scorer, Xte[q, :6], yte[q], idx, warm_start=True)
    assert loo_correlation(S[:, idx] / scorer.n_train_, actual) > 0.95


def test_exact_warns_on_indefinite_hessian(wine):
    X, _, y, _ = wine
    clf = TorchClassifier(_mlp(13, 3, hidden=8), max_iter=30, random_state=0)
    with pytest.warns(UserWarning, match="not positive definite|ggn"):
        InfluenceScorer(clf, curvature="exact").fit(X[:40], y[:40])


def test_user_module_is_not_mutated(wine):
    X, _, y, _ = wine
    mlp = _mlp(13, 3)
    before = [p.detach().clone() for p in mlp.parameters()]
    InfluenceScorer(TorchClassifier(mlp, weight_decay=0.1)).fit(X[:50], y[:50])
    for p, q in zip(before, mlp.parameters(), strict=True):
        assert torch.equal(p, q)


def test_cold_start_retrain_is_seeded(wine):
    # Cold start re-initialises under the estimator's seed: retraining on all
    # rows reproduces the fitted network; warm start stays at the optimum.
    X, _, y, _ = wine
    X, y = X[:50, :5], y[:50]
    clf = TorchClassifier(_mlp(5, 3), weight_decay=0.05, random_state=3).fit(X, y)
    a = make_adapter(clf, X, y)
    keep = np.ones(len(y), bool)
    assert_allclose(a.retrain(keep, warm_start=False).params(), a.params(), atol=1e-6)
    assert_allclose(a.retrain(keep, warm_start=True).params(), a.params(), atol=1e-6)
    keep[0] = False
    assert not np.allclose(a.retrain(keep, warm_start=False).params(), a.params())
