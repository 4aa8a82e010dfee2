"""TorchClassifier/TorchRegressor as scikit-learn estimators: shapes checked at
fit with clear messages, a callable module built for the data, scikit-learn's
binary decision_function convention."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import NotFittedError

torch = pytest.importorskip("torch")

from skinfluence.models import TorchClassifier, TorchRegressor  # noqa: E402


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    return X, np.where(X[:, 0] > 0, "yes", "no"), X @ [1.0, -2.0, 0.5]


def test_callable_module_is_built_for_the_data(data):
    X, y, t = data
    clf = TorchClassifier(torch.nn.Linear, random_state=0).fit(X, y)
    assert clf.module_.weight.shape == (2, 3)
    reg = TorchRegressor(torch.nn.Linear, random_state=0).fit(X, np.c_[t, -t])
    assert reg.module_.weight.shape == (2, 3)
    assert reg.predict(X).shape == (30, 2)
    with pytest.raises(TypeError, match="must return a torch.nn.Module"):
        TorchClassifier(lambda d, k: "not a module").fit(X, y)


def test_shape_mismatches_are_refused_clearly(data):
    X, y, t = data
    with pytest.raises(ValueError, match="Build it for 3 input features"):
        TorchClassifier(torch.nn.Linear(4, 2)).fit(X, y)
    with pytest.raises(ValueError, match="one logit per class, \\(n_samples, 2\\)"):
        TorchClassifier(torch.nn.Linear(3, 3)).fit(X, y)
    with pytest.raises(ValueError, match="or the loss would broadcast"):
        TorchRegressor(torch.nn.Linear(3, 2)).fit(X, t)


def test_unfitted_and_binary_conventions(data):
    X, y, _ = data
    clf = TorchClassifier(torch.nn.Linear(3, 2), weight_decay=0.1)
    for method in (clf.predict, clf.predict_proba, clf.decision_function):
        with pytest.raises(NotFittedError):
            method(X)
    clf.fit(X, y)
    d, P = clf.decision_function(X), clf.predict_proba(X)
    assert d.shape == (30,)
    assert_allclose(d, np.log(P[:, 1] / P[:, 0]))  # log-odds of classes_[1]
    assert_allclose(clf.predict(X) == clf.classes_[1], d > 0)
