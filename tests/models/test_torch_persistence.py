"""Fitted network scorers persist and are shared: pickled and reloaded they
give the fresh results (and can still retrain); concurrent influence calls
give the sequential ones."""

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.frozen import FrozenEstimator
from sklearn.neural_network import MLPClassifier

torch = pytest.importorskip("torch")
skorch = pytest.importorskip("skorch")

from skorch import NeuralNetClassifier  # noqa: E402

from skinfluence import (  # noqa: E402
    InfluenceScorer,
    NoisyLabelDetector,
    Relabeler,
    TorchClassifier,
)
from skinfluence.curvature import LiSSACurvature, LowRankCurvature  # noqa: E402


class Softmax(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(13, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)
        )

    def forward(self, x):
        return torch.softmax(self.body(x), dim=-1)  # NLLLoss on probabilities


def _models(X, y):
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(13, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)
    )
    torch_clf = TorchClassifier(mlp, weight_decay=1e-2, random_state=0, max_iter=200)
    net = NeuralNetClassifier(
        Softmax,
        optimizer=torch.optim.SGD,
        lr=0.1,
        max_epochs=20,
        train_split=None,
        verbose=0,
    ).fit(X.astype(np.float32), y)
    sk_mlp = MLPClassifier((5,), alpha=1e-2, max_iter=300, random_state=0)
    return {
        "torch": torch_clf,
        "skorch": FrozenEstimator(net),
        "mlp": FrozenEstimator(sk_mlp.fit(X, y)),
    }


@pytest.fixture(scope="module")
def wine_small(wine):
    X, Xte, y, yte = wine
    return X[:60], y[:60], Xte[:5], yte[:5]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", ["torch", "skorch", "mlp"])
def test_pickled_scorer_equals_fresh(wine_small, name):
    X, y, Xq, yq = wine_small
    model = _models(X, y)[name]
    Xf = X.astype(np.float32) if name == "skorch" else X
    for curvature in ("auto", "ekfac") if name != "skorch" else ("auto",):
        scorer = InfluenceScorer(
            model, curvature=curvature, damping=1e-2, random_state=0
        ).fit(Xf, y)
        S, s = scorer.influence(Xq, yq), scorer.self_influence_
        again = pickle.loads(pickle.dumps(scorer))
        assert_array_equal(again.influence(Xq, yq), S)
        assert_array_equal(again.self_influence_, s)
        fresh = pickle.loads(pickle.dumps(InfluenceScorer(model, random_state=0)))
        fresh.set_params(curvature=curvature, damping=1e-2)
        assert_array_equal(fresh.fit(Xf, y).influence(Xq, yq), S)
    # the retrain hook survives the round trip (leave-one-out ground truth)
    keep = np.arange(1, len(X))
    a = scorer.adapter_.retrain(keep, warm_start=True).params()
    b = again.adapter_.retrain(keep, warm_start=True).params()
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pickled_cleaners_equal_fresh(wine_small):
    X, y, _, _ = wine_small
    model = _models(X, y)["torch"]
    det = NoisyLabelDetector(model, damping=1e-2).fit(X, y)
    det2 = pickle.loads(pickle.dumps(det))
    assert_array_equal(det2.scores_, det.scores_)
    assert_array_equal(
        det2.scorer_.influence(X[:3], y[:3]), det.scorer_.influence(X[:3], y[:3])
    )
    rel = Relabeler(model, method="label_influence", damping=1e-2).fit(X, y)
    rel2 = pickle.loads(pickle.dumps(rel))
    assert_array_equal(rel2.y_relabeled_, rel.y_relabeled_)
    assert_array_equal(rel2.scorer_.self_influence_, rel.scorer_.self_influence_)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("curvature", ["exact", "cg", "ekfac"])
def test_concurrent_influence_equals_sequential(wine_small, curvature):
    X, y, _, _ = wine_small
    model = _models(X, y)["torch"]
    scorer = InfluenceScorer(
        model, curvature=curvature, damping=1e-2, random_state=0
    ).fit(X, y)
    batches = [(X[i : i + 6], y[i : i + 6]) for i in range(0, 48, 6)]
    sequential = [scorer.influence(Xb, yb) for Xb, yb in batches]
    for _ in range(2):
        with ThreadPoolExecutor(max_workers=8) as pool:
            parallel = list(pool.map(lambda b: scorer.influence(*b), batches))
        for got, want in zip(parallel, sequential, strict=True):
            assert_array_equal(got, want)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_every_backend_pickles_around_a_network(wine_small):
    X, y, Xq, yq = wine_small
    model = FrozenEstimator(_models(X, y)["torch"].fit(X, y))
    backends = (
        "cg",
        LiSSACurvature(depth=30, batch_size=16),
        "diagonal",
        LowRankCurvature(rank=5),
        "blockggn",
        "kfac",
        "ef",
    )
    for curvature in backends:
        scorer = InfluenceScorer(
            model, curvature=curvature, damping=1e-2, random_state=0
        ).fit(X, y)
        S = scorer.influence(Xq, yq)
        again = pickle.loads(pickle.dumps(scorer))
        assert_array_equal(again.influence(Xq, yq), S, err_msg=repr(curvature))
