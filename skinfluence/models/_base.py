"""The adapter interface and its dispatcher.

An adapter turns one fitted estimator plus the data it was trained on into the
objects influence needs: a flat parameter vector, per-sample gradients,
Hessian products and a retrain hook.  Nothing outside ``models/`` knows which
estimator it has.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse.linalg import LinearOperator
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline


@runtime_checkable
class ModelAdapter(Protocol):
    """What influence computations ask of a fitted model.

    The training objective is
    ``J(theta) = (1/n) sum_i loss_i(theta) + (1/2) theta^T diag(penalty) theta``,
    where ``n = n_train`` and ``loss_i`` may carry a per-sample weight (class
    weights).  Every array is float64 unless an adapter says otherwise.
    """

    n_params: int
    n_train: int
    is_classifier: bool

    def params(self) -> NDArray: ...  # (p,)

    def loss(self, X: ArrayLike, y: ArrayLike) -> NDArray: ...  # (m,)

    def prediction(self, X: ArrayLike) -> NDArray: ...  # (m,)

    def loss_grads(self, X: ArrayLike, y: ArrayLike) -> NDArray: ...  # (m, p)

    def prediction_grads(self, X: ArrayLike) -> NDArray: ...  # (m, p)

    def train_grads(self, rows: Any, *, total: bool = False) -> NDArray: ...  # (b, p)

    def objective_grad(self) -> NDArray: ...  # (p,)

    def hessian_operator(self) -> LinearOperator: ...  # (p, p)

    def retrain(
        self, keep: NDArray, *, warm_start: bool = True, random_state: Any = None
    ) -> ModelAdapter: ...


_LOADED: set[str] = set()

#: ``(module prefix of the estimator's class, adapter module)``: adapters that
#: import torch register on first use, so the linear path never imports it.
_LAZY_ADAPTERS = (
    ("skorch", "._skorch"),
    ("sklearn.neural_network", "._mlp"),
)


def encode_labels(classes: NDArray, y: ArrayLike) -> NDArray:
    """Indices of ``y`` in ``classes``; a clear error for unseen labels."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-dimensional for a classifier; got {y.shape}.")
    try:
        codes = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
        unseen = classes[codes] != y
    except TypeError:  # labels of another type than the classes (str vs int)
        codes, unseen = np.zeros(len(y), dtype=np.intp), np.ones(len(y), dtype=bool)
    if np.any(unseen):
        raise ValueError(
            f"y contains labels not seen during fit: {np.unique(y[unseen])!r}; "
            f"known classes are {classes!r}."
        )
    return codes


@functools.singledispatch
def make_adapter(
    estimator: Any, X: ArrayLike, y: ArrayLike, **kwargs: Any
) -> ModelAdapter:
    """Build the adapter for a fitted ``estimator`` trained on ``(X, y)``.

    Parameters
    ----------
    estimator : estimator
        A fitted, supported estimator, a ``Pipeline`` ending in one (earlier
        steps are treated as fixed preprocessing) or a ``FrozenEstimator``.
    X : array-like of shape (n_samples, n_features)
        The training inputs, as given to ``estimator.fit``.
    y : array-like of shape (n_samples,)
        The training targets.
    **kwargs : dict
        Passed to the adapter (``preprocess``).

    Returns
    -------
    adapter : ModelAdapter
    """
    modules = [cls.__module__ + "." for cls in type(estimator).__mro__]
    for prefix, adapter_module in _LAZY_ADAPTERS:
        hit = any(m.startswith(prefix + ".") for m in modules)
        if hit and adapter_module not in _LOADED:
            # The adapter registers on import; load it on first use.
            importlib.import_module(adapter_module, __package__)
            _LOADED.add(adapter_module)
            return make_adapter(estimator, X, y, **kwargs)
    raise TypeError(
        f"skinfluence has no model adapter for {type(estimator).__name__}. "
        f"Supported: {supported_estimators()} (also inside a Pipeline or a "
        "FrozenEstimator)."
    )


def supported_estimators() -> str:
    """The estimators skinfluence can differentiate, for error messages."""
    return (
        "LinearRegression, Ridge, LogisticRegression, MLPClassifier, "
        "MLPRegressor (scikit-learn); "
        "TorchClassifier, TorchRegressor (skinfluence, any nn.Module + loss); "
        "NeuralNetClassifier, NeuralNetBinaryClassifier, NeuralNetRegressor (skorch)"
    )


@make_adapter.register
def _(
    estimator: FrozenEstimator, X: ArrayLike, y: ArrayLike, **kwargs: Any
) -> ModelAdapter:
    return make_adapter(estimator.estimator, X, y, **kwargs)


@make_adapter.register
def _(estimator: Pipeline, X: ArrayLike, y: ArrayLike, **kwargs: Any) -> ModelAdapter:
    if kwargs.get("preprocess") is not None:
        raise TypeError(
            "Nested Pipelines inside a Pipeline's final step are not supported."
        )
    preprocess = estimator[:-1] if len(estimator) > 1 else None
    return make_adapter(estimator[-1], X, y, preprocess=preprocess, **kwargs)
