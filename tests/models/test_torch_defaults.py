"""Defaults that hold on networks trained the usual way (SGD, a few epochs,
float32): "auto" takes the Gauss-Newton family, "cg" answers with a warning
on an indefinite Hessian, and Dropout/BatchNorm are read in eval mode."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

torch = pytest.importorskip("torch")
skorch = pytest.importorskip("skorch")

from skorch import NeuralNetClassifier  # noqa: E402

from skinfluence import InfluenceScorer  # noqa: E402
from skinfluence.curvature import (  # noqa: E402
    CGCurvature,
    ExactCurvature,
    GGNCurvature,
    make_curvature,
)
from skinfluence.curvature._cg import batched_cg  # noqa: E402
from skinfluence.exceptions import NotAtOptimumWarning  # noqa: E402
from skinfluence.models import make_adapter  # noqa: E402


def _sgd_net(X, y, module):
    torch.manual_seed(0)
    return NeuralNetClassifier(
        module,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        lr=0.1,
        max_epochs=30,
        batch_size=32,
        train_split=None,
        verbose=0,
    ).fit(X, y)


@pytest.fixture(scope="module")
def sgd_digits(digits):
    Xtr, Xte, ytr, yte = digits
    X, y = Xtr[:150].astype(np.float32), ytr[:150]
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10)
    )
    return _sgd_net(X, y, mlp), X, y, Xte[:4].astype(np.float32), yte[:4]


def _hessian_is_indefinite(net, X, y):
    H = make_adapter(net, X, y).hessian_matrix()
    return np.linalg.eigvalsh(H)[0] < -1e-3


@pytest.mark.parametrize("damping", [1e-3, "auto"])
def test_readme_recipe_on_an_sgd_trained_skorch_net(sgd_digits, damping):
    net, X, y, Xq, yq = sgd_digits
    assert _hessian_is_indefinite(net, X, y)  # the situation the recipe meets
    scorer = InfluenceScorer(FrozenEstimator(net), curvature="cg", damping=damping)
    with pytest.warns(UserWarning, match=r"Hessian plus damping .* is indefinite"):
        S = scorer.fit(X, y).influence(Xq, yq)
    assert S.shape == (4, 150) and np.all(np.isfinite(S))
    with pytest.warns(UserWarning, match=r"CGCurvature\(operator='ggn'\)"):
        s = scorer.self_influence_
    assert np.all(np.isfinite(s)) and np.all(s > 0)


def test_auto_picks_the_gauss_newton_family_for_networks(sgd_digits, monkeypatch):
    net, X, y, Xq, yq = sgd_digits
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no curvature warning
        warnings.simplefilter("ignore", NotAtOptimumWarning)  # SGD, 30 epochs
        scorer = InfluenceScorer(FrozenEstimator(net), damping=1e-3).fit(X, y)
        S = scorer.influence(Xq, yq)
    assert type(scorer.curvature_) is GGNCurvature
    assert repr(scorer.curvature_) == "GGNCurvature()"
    ggn = InfluenceScorer(FrozenEstimator(net), curvature="ggn", damping=1e-3)
    assert_allclose(S, ggn.fit(X, y).influence(Xq, yq))
    # above the dense size: CG on Gauss-Newton products
    adapter = make_adapter(net, X, y)
    from skinfluence.curvature import _registry

    monkeypatch.setattr(_registry, "AUTO_EXACT_MAX_PARAMS", adapter.n_params - 1)
    backend = make_curvature("auto", adapter)
    assert isinstance(backend, CGCurvature) and backend.operator == "ggn"
    assert repr(backend) == "CGCurvature(operator='ggn')"


def test_auto_stays_exact_for_convex_models(wine):
    X, _, y, _ = wine
    scorer = InfluenceScorer(LogisticRegression(max_iter=1000)).fit(X, y)
    assert type(scorer.curvature_) is ExactCurvature


def test_truncated_cg_keeps_positive_definite_columns_exact():
    # A = diag(3, 2, 1, -1): a right-hand side in the positive eigenspace is
    # solved exactly; one along the negative eigenvector stops at its first
    # step (b^T b / |b^T A b|) b, flagged; the default still raises.
    A = np.diag([3.0, 2.0, 1.0, -1.0])
    B = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    X, _, ok, negative = batched_cg(lambda V: A @ V, B, 1e-12, 20, truncate=True)
    assert_allclose(X[:, 0], [1 / 3, 1 / 2, 1.0, 0.0])
    assert_allclose(X[:, 1], [0, 0, 0, 2.0])
    assert list(ok) == [True, False] and list(negative) == [False, True]
    with pytest.raises(np.linalg.LinAlgError):
        batched_cg(lambda V: A @ V, B, 1e-12, 20)


class _Regularised(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(64, 16),
            torch.nn.BatchNorm1d(16),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(16, 10),
        )

    def forward(self, x):
        return self.body(x)


def test_dropout_and_batchnorm_are_read_in_eval_mode(sgd_digits):
    _, X, y, Xq, yq = sgd_digits
    net = _sgd_net(X, y, _Regularised())
    with pytest.warns(UserWarning, match=r"eval mode.*body.1 \(BatchNorm1d\), body.3"):
        scorer = InfluenceScorer(FrozenEstimator(net), damping=1e-3).fit(X, y)
    S = scorer.influence(Xq, yq)
    assert np.all(np.isfinite(S))
    # the differentiated loss is the eval-mode loss skorch predicts with
    net.module_.eval()
    with torch.no_grad():
        logits = net.module_(torch.as_tensor(Xq))
        ref = torch.nn.functional.cross_entropy(
            logits.double(), torch.as_tensor(yq), reduction="none"
        )
    assert_allclose(scorer.adapter_.loss(Xq, yq), ref.numpy(), rtol=1e-5)
