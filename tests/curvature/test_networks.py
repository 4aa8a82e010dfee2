"""Every backend on a digits MLP (float64), against the exact damped Hessian."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from skinfluence import InfluenceScorer, TorchClassifier  # noqa: E402
from skinfluence.curvature import LiSSACurvature  # noqa: E402


@pytest.fixture(scope="module")
def digits_mlp(digits):
    Xtr, Xte, ytr, yte = digits
    Xtr, ytr = Xtr[:300], ytr[:300]
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(64, 12), torch.nn.Tanh(), torch.nn.Linear(12, 10)
    )
    clf = TorchClassifier(mlp, weight_decay=1e-3, random_state=0, max_iter=2000)
    return clf.fit(Xtr, ytr), Xtr, ytr, Xte[:4], yte[:4]


def _scores(fitted, curvature, damping=1e-3):
    clf, Xtr, ytr, Xq, yq = fitted
    from sklearn.frozen import FrozenEstimator

    scorer = InfluenceScorer(
        FrozenEstimator(clf), curvature=curvature, damping=damping, random_state=0
    )
    return scorer.fit(Xtr, ytr).influence(Xq, yq)


def _corr(S, R):
    return float(np.mean([np.corrcoef(s, r)[0, 1] for s, r in zip(S, R, strict=True)]))


def test_backends_against_exact_on_a_network(digits_mlp):
    exact = _scores(digits_mlp, "exact")
    r = {
        "cg": _corr(_scores(digits_mlp, "cg"), exact),
        "lissa": _corr(
            _scores(digits_mlp, LiSSACurvature(depth=1500, random_state=0)), exact
        ),
        "ggn": _corr(_scores(digits_mlp, "ggn"), exact),
        "lowrank": _corr(_scores(digits_mlp, "lowrank"), exact),
        "identity": _corr(_scores(digits_mlp, "identity", 0.0), exact),
    }
    assert r["cg"] >= 0.99, r
    # A converged stochastic solver of the same system beats a different
    # (PSD) curvature, which beats a rank-50 truncation and no curvature.
    assert r["lissa"] > r["ggn"] > r["lowrank"], r
    assert r["ggn"] > r["identity"], r


def test_lissa_on_the_gauss_newton_system(digits_mlp):
    # LiSSA driven by Gauss-Newton products solves the GGN system, which stays
    # positive definite where a network's Hessian need not be.
    ggn = _scores(digits_mlp, "ggn")
    lissa = _scores(
        digits_mlp, LiSSACurvature(depth=4000, operator="ggn", random_state=0)
    )
    assert _corr(lissa, ggn) > 0.99
