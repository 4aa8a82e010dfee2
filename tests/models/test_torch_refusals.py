"""Networks that cannot be answered are refused with a message naming the
problem: outputs that do not fit the targets, a single class, non-finite
parameters, a net that was never trained; fitting never reseeds torch."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator

torch = pytest.importorskip("torch")
skorch = pytest.importorskip("skorch")

from skorch import NeuralNetClassifier  # noqa: E402

from skinfluence import InfluenceScorer, TorchClassifier, TorchRegressor  # noqa: E402
from skinfluence.models import TorchAdapter, make_adapter  # noqa: E402


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4)).astype(np.float32)
    y = np.digitize(X[:, 0], [-0.5, 0.5])  # three classes
    return X, y


def _skorch(X, y, width, **kwargs):
    torch.manual_seed(0)
    return NeuralNetClassifier(
        torch.nn.Linear(4, width),
        criterion=torch.nn.CrossEntropyLoss,
        max_epochs=3,
        train_split=None,
        verbose=0,
        **kwargs,
    ).fit(X, y)


def test_more_outputs_than_classes_is_refused(data):
    X, y = data
    net = _skorch(X, y, width=5)  # trains: CrossEntropy indexes logits 0..2 of 5
    with pytest.raises(ValueError, match=r"outputs shape \(5,\) per row, but y has 3"):
        InfluenceScorer(FrozenEstimator(net)).fit(X, y)


def test_regression_outputs_must_match_the_targets(data):
    X, _ = data
    t = X @ np.arange(4.0)
    with pytest.raises(ValueError, match="outputs 2 values per row but y has 1"):
        TorchAdapter(torch.nn.Linear(4, 2), torch.nn.MSELoss(), X, t, kind="regression")
    with pytest.raises(ValueError, match="one logit per row"):
        TorchAdapter(
            torch.nn.Linear(4, 2),
            torch.nn.BCEWithLogitsLoss(),
            X,
            (t > 0).astype(float),
            kind="binary",
            classes=np.array([0.0, 1.0]),
        )
    # the matching shapes are accepted
    TorchAdapter(torch.nn.Linear(4, 1), torch.nn.MSELoss(), X, t, kind="regression")


def test_single_class_targets_are_refused(data):
    X, _ = data
    one = np.zeros(len(X), dtype=int)
    with pytest.raises(ValueError, match="only one class"):
        TorchClassifier(torch.nn.Linear(4, 1)).fit(X, one)
    net = _skorch(X, one, width=1)
    with pytest.raises(ValueError, match="single class"):
        InfluenceScorer(FrozenEstimator(net)).fit(X, one)


def test_non_finite_parameters_are_named(data):
    X, y = data
    clf = TorchClassifier(
        torch.nn.Sequential(
            torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 3)
        ),
        random_state=0,
        max_iter=20,
    ).fit(X, y)
    with torch.no_grad():
        clf.module_[2].bias[1] = float("nan")
        clf.module_[0].weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"0\.weight \(1 of 12 values\), 2\.bias"):
        make_adapter(clf, X, y)
    with pytest.raises(ValueError, match="NaN or infinite"):
        InfluenceScorer(FrozenEstimator(clf), curvature="identity").fit(X, y)


def test_untrained_nets_are_not_fitted(data):
    X, y = data
    net = NeuralNetClassifier(
        torch.nn.Linear(4, 3), criterion=torch.nn.CrossEntropyLoss, train_split=None
    ).initialize()
    with pytest.raises(NotFittedError, match="initialised but not trained"):
        InfluenceScorer(FrozenEstimator(net)).fit(X, y)
    clf = TorchClassifier(torch.nn.Linear(4, 3))
    with pytest.raises(NotFittedError):
        make_adapter(clf, X, y)
    with pytest.raises(NotFittedError):
        InfluenceScorer(FrozenEstimator(clf)).fit(X, y)


@pytest.mark.parametrize(
    "make",
    [
        lambda: TorchClassifier(torch.nn.Linear(4, 3), random_state=0, max_iter=5),
        lambda: TorchClassifier(
            torch.nn.Linear, optimizer="adam", random_state=0, max_iter=2
        ),
        lambda: TorchRegressor(torch.nn.Linear, random_state=0, max_iter=5),
    ],
)
def test_seeded_fit_leaves_the_global_generator_alone(data, make):
    X, y = data
    a, b = make(), make()  # building a module instance draws from torch
    target = y if isinstance(a, TorchClassifier) else X[:, 0].astype(float)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a.fit(X, target)
    assert torch.equal(torch.rand(3), expected)
    # and the seed still fixes the fit
    b.fit(X, target)
    for pa, pb in zip(a.module_.parameters(), b.module_.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_skorch_cold_retrain_leaves_the_global_generator_alone(data):
    X, y = data
    adapter = make_adapter(_skorch(X, y, width=3), X, y)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    first = adapter.retrain(np.arange(1, len(X)), warm_start=False, random_state=0)
    assert torch.equal(torch.rand(3), expected)
    again = adapter.retrain(np.arange(1, len(X)), warm_start=False, random_state=0)
    np.testing.assert_array_equal(first.params(), again.params())
