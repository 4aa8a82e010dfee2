"""The adapter interface and its dispatcher.

An adapter turns one fitted estimator plus the data it was trained on into the
objects influence needs: a flat parameter vector, per-sample gradients,
Hessian products and a retrain hook.  Nothing outside ``models/`` knows which
estimator it has.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

from ._contract import ModelAdapter, require

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
def _dispatch(estimator: Any, X: ArrayLike, y: ArrayLike, **kwargs: Any) -> Any:
    # along the MRO, so a user's subclass of MLPClassifier loads the adapter
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
        "FrozenEstimator). Add a model family with @make_adapter.register"
        f"({type(estimator).__name__})."
    )


def make_adapter(
    estimator: Any, X: ArrayLike, y: ArrayLike, **kwargs: Any
) -> ModelAdapter:
    """Build the adapter for a fitted ``estimator`` trained on ``(X, y)``.

    Dispatch is on the estimator's class (``functools.singledispatch``);
    ``make_adapter.register(EstimatorClass)`` adds a model family, and is
    the documented way to plug one in (see the example below).

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
        Passed to the adapter: ``preprocess`` (the fitted steps of a
        ``Pipeline`` before the model, or None), ``sample_weight``,
        ``batch_size`` and ``verbose``.  A registered function must accept
        them (``**kwargs``) and refuse what it cannot honour
        (``sample_weight``) with a ``ValueError``.

    Returns
    -------
    adapter : ModelAdapter
        An object implementing the core :class:`ModelAdapter` interface, and
        whichever capabilities its model family has
        (:class:`~skinfluence.models.DenseCurvature`,
        :class:`~skinfluence.models.KroneckerStatistics`, ...).

    Raises
    ------
    TypeError
        When no adapter is registered for the estimator, or the registered
        function returns an object that lacks part of the core interface
        (the message lists the missing members).

    Notes
    -----
    A new model family is one file: an adapter class with the members of
    :class:`ModelAdapter` (at least) and a function registered for the
    estimator class.  Every curvature backend that needs only the core
    (``"cg"``, ``"exact"``, ``"ggn"``, ``"ef"``, ``"diagonal"``,
    ``"lowrank"``, ``"identity"``) and every influence question then works;
    the others name the capability they miss (``"kfac"`` needs
    :class:`~skinfluence.models.KroneckerStatistics`, ``loo_change`` needs
    :class:`~skinfluence.models.Retrainable`, ...).

    Examples
    --------
    Ridge least squares written from scratch (objective as scikit-learn's
    ``Ridge``: ``(1/2) sum_i (x_i w - y_i)^2 + (alpha/2) ||w||^2``, i.e. a
    penalty ``alpha / n`` on the mean-loss scale), plugged in with the core
    interface only:

    >>> import numpy as np
    >>> from scipy.sparse.linalg import aslinearoperator
    >>> from sklearn.base import BaseEstimator, RegressorMixin
    >>> from skinfluence import InfluenceScorer
    >>> from skinfluence.models import make_adapter
    >>> class LeastSquares(RegressorMixin, BaseEstimator):
    ...     def __init__(self, alpha=1.0):
    ...         self.alpha = alpha
    ...     def fit(self, X, y):
    ...         A = X.T @ X + self.alpha * np.eye(X.shape[1])
    ...         self.coef_ = np.linalg.solve(A, X.T @ y)
    ...         return self
    ...     def predict(self, X):
    ...         return X @ self.coef_
    >>> class LeastSquaresAdapter:
    ...     is_classifier, classes, n_outputs = False, None, 1
    ...     removal_gradient = "loss"  # alpha is on the sum scale, as Ridge's
    ...     def __init__(self, est, X, y, sample_weight=None, **ignored):
    ...         if sample_weight is not None:  # never drop what it cannot use
    ...             raise ValueError("LeastSquares takes no sample_weight.")
    ...         self.X, self.y, self.w = np.asarray(X), np.asarray(y), est.coef_
    ...         self.n_train, self.n_params = self.X.shape
    ...         self.penalty = np.full(self.n_params, est.alpha / self.n_train)
    ...         self.null_basis = np.zeros((self.n_params, 0))
    ...         self.weights = np.ones(self.n_train)
    ...         self.train_indices = np.arange(self.n_train)
    ...     def params(self):
    ...         return self.w.copy()
    ...     def loss(self, X, y):
    ...         return 0.5 * (X @ self.w - y) ** 2
    ...     def prediction(self, X):
    ...         return X @ self.w
    ...     def loss_grads(self, X, y):
    ...         return (X @ self.w - y)[:, None] * X
    ...     def prediction_grads(self, X):
    ...         return np.asarray(X, dtype=float)
    ...     def train_grads(self, rows=slice(None), *, total=False, labels=None):
    ...         G = self.loss_grads(self.X[rows], self.y[rows])
    ...         return G + self.penalty * self.w if total else G
    ...     def train_prediction_grads(self, rows=slice(None)):
    ...         return self.X[rows]
    ...     def objective_grad(self):
    ...         return self.train_grads().mean(axis=0) + self.penalty * self.w
    ...     def hessian_operator(self):
    ...         H = self.X.T @ self.X / self.n_train + np.diag(self.penalty)
    ...         return aslinearoperator(H)
    ...     ggn_operator = hessian_operator
    >>> @make_adapter.register(LeastSquares)
    ... def _(estimator, X, y, **kwargs):
    ...     return LeastSquaresAdapter(estimator, X, y, **kwargs)
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.standard_normal((40, 3)), rng.standard_normal(40)
    >>> scorer = InfluenceScorer(LeastSquares(alpha=1.0), curvature="cg").fit(X, y)
    >>> predicted = scorer.parameter_change(range(40))
    >>> w = scorer.estimator_.coef_
    >>> actual = [LeastSquares(alpha=1.0).fit(np.delete(X, i, 0), np.delete(y, i))
    ...           .coef_ - w for i in range(40)]
    >>> bool(np.corrcoef(predicted.ravel(), np.ravel(actual))[0, 1] > 0.99)
    True

    A backend that needs more than the core says so:

    >>> try:
    ...     InfluenceScorer(LeastSquares(), curvature="kfac").fit(X, y)
    ... except TypeError as exc:
    ...     print(str(exc)[:50])
    curvature='kfac' needs Kronecker layer statistics,
    """
    adapter = _dispatch(estimator, X, y, **kwargs)
    return require(
        adapter,
        ModelAdapter,
        purpose=f"The adapter made for {type(estimator).__name__}",
        instead="implement the members of skinfluence.models.ModelAdapter",
    )


make_adapter.register = _dispatch.register  # type: ignore[attr-defined]
make_adapter.registry = _dispatch.registry  # type: ignore[attr-defined]
make_adapter.dispatch = _dispatch.dispatch  # type: ignore[attr-defined]


def supported_estimators() -> str:
    """The estimators skinfluence can differentiate, for error messages."""
    return (
        "LinearRegression, Ridge, LogisticRegression, RidgeCV, RidgeClassifier(CV), "
        "LogisticRegressionCV, SGDClassifier, SGDRegressor, PoissonRegressor, "
        "GammaRegressor, TweedieRegressor, HuberRegressor, MLPClassifier, "
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
