"""Scores from layer statistics (outer products) equal the generic path:
per-row autograd gradients against the backend's solve."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import LogisticRegression, Ridge

from skinfluence import InfluenceScorer
from skinfluence.curvature import EKFACCurvature, GGNCurvature, KFACCurvature
from skinfluence.influence import pairwise_influence, self_influence
from skinfluence.influence._kronecker import outer_product_layers


def _reference(scorer, Xq, yq):
    a, b = scorer.adapter_, scorer.curvature_
    G = a.train_grads()  # vmapped per-row autograd, weights included
    Q = a.loss_grads(Xq, yq)
    return (G @ b.solve(Q.T)).T, np.einsum("ij,ji->i", G, b.solve(G.T))


def _check(scorer, Xq, yq):
    a, b = scorer.adapter_, scorer.curvature_
    S_ref, s_ref = _reference(scorer, Xq, yq)
    S = pairwise_influence(a, b, Xq, yq)
    s = self_influence(a, b)
    assert_allclose(S, S_ref, rtol=1e-9, atol=1e-12 * np.abs(S_ref).max())
    assert_allclose(s, s_ref, rtol=1e-9, atol=1e-12 * np.abs(s_ref).max())


@pytest.mark.parametrize(
    "curvature",
    [
        EKFACCurvature(fisher="mc", random_state=0),
        KFACCurvature(fisher="type2"),
        KFACCurvature(fisher="empirical", damping_mode="heuristic"),
        GGNCurvature(),
    ],
    ids=["ekfac", "kfac", "kfac-heuristic", "ggn"],
)
def test_network_scores_from_outer_products(curvature, digits, rng):
    torch = pytest.importorskip("torch")
    from skinfluence import TorchClassifier

    Xtr, Xte, ytr, yte = digits
    torch.manual_seed(0)
    mod = torch.nn.Sequential(
        torch.nn.Linear(64, 12), torch.nn.Tanh(), torch.nn.Linear(12, 10)
    )
    net = TorchClassifier(
        mod, optimizer="adam", max_iter=3, weight_decay=1e-3, random_state=0
    )
    w = rng.uniform(0.2, 2.0, 200)
    scorer = InfluenceScorer(net, curvature=curvature, damping=1e-3)
    scorer.fit(Xtr[:200], ytr[:200], sample_weight=w)
    assert outer_product_layers(scorer.adapter_) is not None
    _check(scorer, Xte[:4], yte[:4])


@pytest.mark.parametrize("model", ["logistic", "ridge"])
def test_linear_model_scores_from_outer_products(model, breast_cancer, diabetes):
    Xtr, Xte, ytr, yte = breast_cancer if model == "logistic" else diabetes
    est = LogisticRegression(max_iter=1000) if model == "logistic" else Ridge()
    scorer = InfluenceScorer(est, curvature=EKFACCurvature(fisher="type2"))
    scorer.set_params(damping=1e-3).fit(Xtr, ytr)
    _check(scorer, Xte[:3], yte[:3])


def test_networks_with_other_layers_keep_the_generic_path(digits):
    torch = pytest.importorskip("torch")
    from skinfluence import TorchClassifier

    Xtr, Xte, ytr, yte = digits
    torch.manual_seed(0)
    mod = torch.nn.Sequential(
        torch.nn.Linear(64, 6), torch.nn.LayerNorm(6), torch.nn.Linear(6, 10)
    )
    net = TorchClassifier(mod, optimizer="adam", max_iter=2, random_state=0)
    scorer = InfluenceScorer(net, curvature="ggn", damping=1e-2).fit(Xtr[:60], ytr[:60])
    assert outer_product_layers(scorer.adapter_) is None
    _check(scorer, Xte[:2], yte[:2])
