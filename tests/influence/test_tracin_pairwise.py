"""Pairwise TracInCP against plain autograd on the checkpoints skorch saved."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

torch = pytest.importorskip("torch")
pytest.importorskip("skorch")

from skorch import NeuralNetClassifier  # noqa: E402

from skinfluence import InfluenceScorer, TorchClassifier, TracInCheckpoints  # noqa: E402
from skinfluence.influence import tracin_pairwise, tracin_self_influence  # noqa: E402


def _mlp():
    return torch.nn.Sequential(
        torch.nn.Linear(30, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)
    )


@pytest.fixture(scope="module")
def traced(breast_cancer):
    Xtr, Xte, ytr, yte = breast_cancer
    X, y = Xtr[:80].astype(np.float32), ytr[:80]
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        _mlp(),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        lr=0.05,
        max_epochs=3,
        batch_size=16,
        train_split=None,
        callbacks=[("tracin", TracInCheckpoints())],
        verbose=0,
    )
    with warnings.catch_warnings():  # 3 SGD epochs: not at an optimum
        warnings.simplefilter("ignore")
        scorer = InfluenceScorer(net, curvature="identity").fit(X, y)
    return scorer, X, y, Xte[:6].astype(np.float32), yte[:6]


def _autograd_grads(theta, X, y):
    probe = _mlp().double()
    probe.load_state_dict({k: v.double() for k, v in theta.items()})
    rows = []
    for i in range(len(y)):
        probe.zero_grad()
        out = probe(torch.as_tensor(X[i : i + 1], dtype=torch.float64))
        torch.nn.functional.cross_entropy(out, torch.as_tensor(y[i : i + 1])).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in probe.parameters()]))
    return torch.stack(rows).numpy()


def test_pairwise_tracin_is_the_checkpoint_sum_of_gradient_products(traced):
    scorer, X, y, Xq, yq = traced
    checkpoints = dict(scorer.estimator_.callbacks_)["tracin"].checkpoints_
    assert len(checkpoints) == 3
    assert len({lr for _, lr in checkpoints}) == 1
    expected = np.zeros((len(yq), len(y)))
    for theta, lr in checkpoints:
        expected += lr * _autograd_grads(theta, Xq, yq) @ _autograd_grads(theta, X, y).T
    S = scorer.influence(Xq, yq, method="tracin")
    assert S.shape == (6, 80)
    assert_allclose(S, expected, rtol=1e-5, atol=1e-12 * np.abs(expected).max())
    # blocked over both sides: the same numbers
    blocked = tracin_pairwise(scorer.adapter_, Xq, yq, batch_size=7)
    assert_allclose(blocked, S, rtol=1e-12)


def test_pairwise_tracin_diagonal_is_the_self_influence(traced):
    scorer, X, y, _, _ = traced
    S = scorer.influence(X, y, method="tracin")
    assert_allclose(np.diag(S), tracin_self_influence(scorer.adapter_), rtol=1e-12)


def test_pairwise_tracin_prediction_target_and_refusals(traced, breast_cancer):
    scorer, X, y, Xq, _ = traced
    adapter = scorer.adapter_
    S = tracin_pairwise(adapter, Xq, target="prediction")
    expected = sum(
        lr
        * adapter.with_params(theta).prediction_grads(Xq)
        @ adapter.with_params(theta).train_grads().T
        for theta, lr in adapter.checkpoints
    )
    assert_allclose(S, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="needs y"):
        tracin_pairwise(adapter, Xq)
    with pytest.raises(ValueError, match="target must be one of"):
        tracin_pairwise(adapter, Xq, target="margin")
    Xtr, _, ytr, _ = breast_cancer
    torch.manual_seed(0)
    lbfgs = InfluenceScorer(TorchClassifier(_mlp(), max_iter=5), curvature="identity")
    with pytest.warns(Warning):
        lbfgs.fit(Xtr[:40], ytr[:40])
    with pytest.raises(ValueError, match="TracInCheckpoints"):
        lbfgs.influence(Xtr[:2], ytr[:2], method="tracin")
